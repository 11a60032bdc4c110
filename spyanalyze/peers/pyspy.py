"""py-spy's output (0.3 and 0.4), raw (collapsed stacks) and speedscope, as a ``RecordingData``.

* Raw (``py-spy record -f raw``): one line per distinct stack, ``frame;frame;... COUNT``, root
  first, a frame ``name (file:line)``, ``name (file)`` without line numbers, or a bare name
  (benfred/py-spy, src/flamegraph.rs, ``Flamegraph::increment``); the file is shortened to its
  module path.  With ``--threads`` the first frame is ``thread (TID)`` or ``thread (TID): NAME``,
  with ``--subprocesses`` frames ``process PID:"COMMAND"`` come before it, outermost parent first
  (src/main.rs, src/stack_trace.rs ``ProcessInfo::to_frame``).  Counts only: no timestamps.
* Speedscope (``-f speedscope``): the speedscope file format (its schema is
  https://www.speedscope.app/file-format-schema.json); py-spy writes one ``sampled`` profile per
  thread named ``Thread TID "NAME"`` (``Process PID Thread TID "NAME"`` with
  ``--subprocesses``), samples in time order as lists of indices into ``shared.frames``, root
  first, each weighing 1/rate seconds (src/speedscope.rs).  Sample times are rebuilt as the
  running sum of the weights of each thread, so they hold its samples' order and spacing, not
  when py-spy took them.

py-spy leaves idle threads out unless ``--idle``, and records no CPU time, memory or GIL state.
Its function names are qualified (``Class.method``) on Python 3.11 and later.
"""

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from spyformat.errors import CorruptRecording

from spyanalyze.peers.builder import MAX_ID, PeerBuilder, ThreadIds, bounded_lines, number

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
#: What a parsed speedscope file may take per byte of JSON (lists of small ints: a list object
#: per sample and a pointer per frame), charged before ``json`` builds it.
JSON_COST_PER_BYTE = 16
_UNITS_NS = {"nanoseconds": 1, "microseconds": 1000, "milliseconds": 1000_000, "seconds": 1000_000_000}

_FRAME = re.compile(r"^(.*?) \((.*):(\d+)\)$")
_FRAME_NO_LINE = re.compile(r"^(.*?) \((.*)\)$")
_THREAD = re.compile(r"^thread \((0x[0-9A-Fa-f]+|\d+)\)(?:: (.*))?$")
_PROCESS = re.compile(r'^process (\d+):"(.*)"$', re.DOTALL)
_PROFILE = re.compile(r'^(?:Process (\d+) )?Thread (0x[0-9A-Fa-f]+|\d+) "(.*)"$', re.DOTALL)


def is_speedscope(head: bytes) -> bool:
    """A JSON object naming the speedscope schema first, as py-spy (and speedscope) write it."""
    text = head.lstrip()
    return text.startswith(b"{") and b'"$schema"' in text[:200] and SPEEDSCOPE_SCHEMA.encode() in text[:300]


class NotCollapsed(CorruptRecording):
    """The first line of a text file is not a collapsed stack: the file is no profile at all."""


def thread_id(threads: ThreadIds, text: str) -> Tuple[int, Optional[str]]:
    """py-spy's thread id: native on Linux, a pthread id (``0x...``, 64 bits) elsewhere."""
    return threads.of(int(text, 16) if text.lower().startswith("0x") else int(text), text)


# ------------------------------------------------------------------------------------------
# Raw (collapsed stacks)


def read_collapsed(stream, max_memory: Optional[int] = None):
    builder = PeerBuilder(max_memory)
    threads = ThreadIds()
    frame_ids: Dict[str, int] = {}
    stacks: Dict[str, Tuple[int, int, int]] = {}          # stack text -> (stack id, pid, tid)
    any_thread = False
    for offset, raw in bounded_lines(stream, "collapsed stacks"):
        line = raw.decode("utf-8", "replace")
        if not line.strip():
            continue
        text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit() or not (text or line.startswith(" ")):    # " N": no frames
            error = NotCollapsed if not stacks else CorruptRecording
            raise error("not a line of collapsed stacks (frame;frame;... COUNT)", offset)
        count = number(count_text, "a sample count", offset, low=1)
        known = stacks.get(text)
        if known is None:
            known = stacks[text] = _collapsed_stack(builder, threads, frame_ids, text)
        stack, pid, tid = known
        any_thread = any_thread or bool(tid)
        builder.samples(stack, count, pid, tid)
    if not builder.count:
        raise NotCollapsed("no samples: not collapsed stacks (frame;frame;... COUNT)")
    lacks = "no timestamps, CPU time, memory or thread states"
    header: Dict[str, Any] = {
        "recorder": "py-spy", "peer_format": "collapsed stacks",
        "imported": "from py-spy collapsed output: %s%s" % (lacks, "" if any_thread else ", one thread "
                                                                     "(no --threads)")}
    pids = sorted(pid for pid in builder.data.processes if pid)
    if pids:
        header["pid"] = pids[0]
    return builder.finish(header)


def _collapsed_stack(builder, threads, frame_ids, text) -> Tuple[int, int, int]:
    parts = text.split(";") if text else []
    pid = tid = 0
    name = None
    start = 0
    while start < len(parts):
        process = _PROCESS.match(parts[start])
        if not process:
            break
        pid = number(process.group(1), "a process id", None, high=MAX_ID)
        start += 1
    if start < len(parts):
        thread = _THREAD.match(parts[start])
        if thread:
            tid, name = thread_id(threads, thread.group(1))
            name = thread.group(2) or name
            start += 1
    frames: List[int] = []
    for part in parts[start:]:
        fid = frame_ids.get(part)
        if fid is None:
            fid = frame_ids[part] = _collapsed_frame(builder, part)
        frames.append(fid)
    if tid or pid:
        builder.thread(pid, tid, **({"name": name} if name else {}))
    return builder.stack(tuple(frames)), pid, tid


def _collapsed_frame(builder, part):
    match = _FRAME.match(part)
    if match:
        return builder.frame(match.group(2), match.group(1), number(match.group(3), "a line number",
                                                                    high=MAX_ID))
    match = _FRAME_NO_LINE.match(part)
    if match:
        return builder.frame(match.group(2), match.group(1), 0)
    return builder.frame("", part, 0)


# ------------------------------------------------------------------------------------------
# Speedscope


def read_speedscope(stream, max_memory: Optional[int] = None):
    builder = PeerBuilder(max_memory)
    text = _read_json_bytes(stream, builder)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecording("not valid JSON (%s)" % str(exc)[:80]) from None
    if not isinstance(document, dict) or document.get("$schema") != SPEEDSCOPE_SCHEMA:
        raise CorruptRecording("a JSON file that is not in the speedscope format (no $schema %s)"
                               % SPEEDSCOPE_SCHEMA)
    shared = document.get("shared")
    profiles = document.get("profiles")
    if not isinstance(shared, dict) or not isinstance(shared.get("frames"), list) \
            or not isinstance(profiles, list):
        raise CorruptRecording("a speedscope file without shared.frames or profiles")
    frames = [_speedscope_frame(builder, frame, index) for index, frame in enumerate(shared["frames"])]
    threads = ThreadIds()
    for index, profile in enumerate(profiles):
        _speedscope_profile(builder, threads, frames, profile, index)
    exporter = document.get("exporter")
    header: Dict[str, Any] = {"recorder": exporter if isinstance(exporter, str) else "speedscope",
                              "peer_format": "speedscope",
                              "imported": "from %s speedscope output: times rebuilt from sample weights; no "
                                          "wall-clock start, CPU time, memory or thread states"
                                          % (exporter.split("@")[0] if isinstance(exporter, str) else "a")}
    pids = sorted(pid for pid in builder.data.processes if pid)
    if pids:
        header["pid"] = pids[0]
    return builder.finish(header)


def _read_json_bytes(stream, builder):
    pieces = []
    while True:
        piece = stream.read(1 << 20)
        if not piece:
            break
        builder.charge(JSON_COST_PER_BYTE * len(piece), "a speedscope file's parsed JSON")
        pieces.append(piece)
    return b"".join(pieces)


def _speedscope_frame(builder, frame, index):
    if not isinstance(frame, dict) or not isinstance(frame.get("name"), str):
        raise CorruptRecording("speedscope frame %d has no name" % index)
    file = frame.get("file")
    line = frame.get("line")
    return builder.frame(file if isinstance(file, str) else "", frame["name"],
                         line if isinstance(line, int) and 0 <= line <= MAX_ID else 0)


def _speedscope_profile(builder, threads, frames, profile, index):
    if not isinstance(profile, dict) or profile.get("type") != "sampled":
        raise CorruptRecording("speedscope profile %d is not a sampled profile (only those are read)"
                               % index)
    samples, weights = profile.get("samples"), profile.get("weights")
    if not isinstance(samples, list) or not isinstance(weights, list) or len(samples) != len(weights):
        raise CorruptRecording("speedscope profile %d: samples and weights differ" % index)
    name = profile.get("name") if isinstance(profile.get("name"), str) else ""
    match = _PROFILE.match(name)
    if match:
        pid = number(match.group(1), "a process id", high=MAX_ID) if match.group(1) else 0
        tid, stand_in = thread_id(threads, match.group(2))
        thread_name = match.group(3) or stand_in or ""
    else:
        pid, tid, thread_name = 0, index + 1, name or "profile %d" % index
    builder.thread(pid, tid, name=thread_name)
    unit = _UNITS_NS.get(profile.get("unit"))
    start = profile.get("startValue")
    clock = float(start) * unit if unit and isinstance(start, (int, float)) and start >= 0 else 0.0
    stacks: Dict[Tuple[int, ...], int] = {}
    for sample, weight in zip(samples, weights):
        if not isinstance(sample, list) or not all(isinstance(i, int) and 0 <= i < len(frames)
                                                   for i in sample):
            raise CorruptRecording("speedscope profile %d: a sample refers to no frame" % index)
        key = tuple(sample)
        stack = stacks.get(key)
        if stack is None:
            stack = stacks[key] = builder.stack(tuple(frames[i] for i in sample))
        if not isinstance(weight, (int, float)) or not 0 <= weight < 1e18:
            raise CorruptRecording("speedscope profile %d: a weight out of range" % index)
        builder.sample(stack, pid, tid, int(clock))
        if unit:
            clock += weight * unit
