"""Shared helpers for the spyanalyze tests: build .spy files with spyformat.SpyWriter, and run
the real recorder on tests/targets/split.py when it is available.

(Named test_analyze_*.py so it sits with the tests it serves; it holds no tests itself.)
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spyformat import Interner, SampleFlag, SpyWriter

HERE = Path(__file__).resolve().parent
SPLIT = HERE / "targets" / "split.py"
PHASED = HERE / "targets" / "phased.py"
SCHEMA = HERE / "data" / "speedscope-file-format-schema.json"

PROJECT = "/home/dev/proj"
STDLIB = "/usr/lib/python3.11"
SITE = "/home/dev/proj/.venv/lib/python3.11/site-packages"


class RecordingBuilder:
    """Write a realistic recording by hand: several threads, nested stacks.

    Frames are given as (file, qualname, line), root first; ``name`` is the last dotted part of
    the qualname, as CPython's co_name is.
    """

    def __init__(self, pid=4242, interval_ns=10_000_000, start_wall_ns=1_700_000_000_000_000_000,
                 python_version="3.11.7", **header):
        self.pid = pid
        self.header = {"interval_ns": interval_ns, "pid": pid, "argv": ["python", "app.py"],
                       "python_version": python_version, "python_executable": "/usr/bin/python3.11",
                       "host": "testhost", "recorder": "test-builder", "start_wall_ns": start_wall_ns,
                       "start_mono_ns": 5_000_000_000}
        self.header.update(header)
        self.threads = {}
        self.samples = []
        self.trailer = {"samples": 0, "errors": 0, "late": 0}

    def thread(self, tid, name, pid=None, py_thread_id=None):
        self.threads[(pid or self.pid, tid)] = {"pid": pid or self.pid, "tid": tid,
                                                "py_thread_id": py_thread_id or tid * 16, "name": name,
                                                "start_ns": 0, "end_ns": None}
        return self

    def sample(self, t, tid, frames, cpu=None, rss=50_000_000, flags=0, pid=None):
        if cpu is None:
            cpu = 0 if flags & SampleFlag.IDLE else self.header["interval_ns"]
        self.samples.append((t, pid or self.pid, tid, tuple(frames), cpu, rss, flags))
        return self

    def write(self, path, max_batch=65536, max_interned=1_000_000, trailer=True):
        with open(path, "wb") as stream:
            writer = SpyWriter(stream, max_batch=max_batch)
            interned = Interner(writer, limit=max_interned)
            writer.write_header(self.header)
            for pid in sorted({s[1] for s in self.samples} | {self.pid}):
                writer.process(pid=pid, argv=self.header["argv"],
                               python_version=self.header["python_version"])
            for fields in self.threads.values():
                writer.thread(**fields)
            for t, pid, tid, frames, cpu, rss, flags in self.samples:
                ids = tuple(interned.frame_id(file, qualname.rsplit(".", 1)[-1], qualname, line, -1)
                            for file, qualname, line in frames)
                writer.sample(t, pid, tid, interned.stack_id(ids), cpu, rss, flags)
            self.trailer["samples"] = len(self.samples)
            if trailer:
                writer.close(self.trailer)
            else:
                writer.flush()
        return Path(path)


# Frames of a small web-ish application.
MAIN = (PROJECT + "/app/main.py", "<module>", 40)
RUN = (PROJECT + "/app/main.py", "run", 30)
HANDLE = (PROJECT + "/app/handlers.py", "Handler.handle", 12)
PARSE = (PROJECT + "/app/handlers.py", "Handler.parse", 20)
QUERY = (PROJECT + "/app/db.py", "query", 8)
JSON_LOADS = (STDLIB + "/json/__init__.py", "loads", 346)
JSON_DECODE = (STDLIB + "/json/decoder.py", "JSONDecoder.decode", 337)
NP_DOT = (SITE + "/numpy/core/multiarray.py", "dot", 741)
THREAD_RUN = (STDLIB + "/threading.py", "Thread.run", 975)
WORKER = (PROJECT + "/app/worker.py", "work", 15)
SLEEP = (PROJECT + "/app/worker.py", "wait_for_jobs", 22)


def app_recording(path, seconds=2.0, interval_ns=10_000_000, parse_share=0.5, max_batch=65536, **header):
    """MainThread handles requests (parse / query / json), 'worker' computes with numpy,
    'idler' sleeps (IDLE samples).  Deterministic: the pattern repeats every 4 ticks."""
    builder = RecordingBuilder(interval_ns=interval_ns, **header)
    builder.thread(101, "MainThread").thread(102, "worker").thread(103, "idler")
    ticks = int(seconds * 1e9 / interval_ns)
    parse_every = max(1, round(1 / parse_share)) if parse_share else 0
    for i in range(ticks):
        t = i * interval_ns
        if parse_every and i % parse_every == 0:
            main = (MAIN, RUN, HANDLE, PARSE, JSON_LOADS, JSON_DECODE)
        elif i % 2:
            main = (MAIN, RUN, HANDLE, QUERY)
        else:
            main = (MAIN, RUN, HANDLE)
        builder.sample(t, 101, main, flags=SampleFlag.GIL if i % 2 == 0 else 0,
                       rss=50_000_000 + i * 1000)
        builder.sample(t + 1000, 102, (THREAD_RUN, WORKER, NP_DOT), cpu=interval_ns // 2,
                       flags=SampleFlag.GIL if i % 2 else 0, rss=50_000_000 + i * 1000)
        builder.sample(t + 2000, 103, (THREAD_RUN, SLEEP), flags=SampleFlag.IDLE, rss=50_000_000 + i * 1000)
    return builder.write(path, max_batch=max_batch)


# ------------------------------------------------------------------------------------------
# Real recordings


@functools.lru_cache(maxsize=None)
def spyrec_available():
    """True when the recorder CLI exists and answers --help (it is written in parallel).  Asked
    once per test run: the answer cannot change meanwhile, and each asking starts a process."""
    try:
        result = subprocess.run([sys.executable, "-m", "spyrec", "--help"], capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def record(out, target, seconds, rate=200, options=()):
    """Record the command ``target`` with the real recorder (it launches it) into ``out``, with
    the recorder's ``options`` too.  Skips when the recorder is not there yet or cannot attach."""
    if not spyrec_available():
        pytest.skip("the spyrec recorder CLI is not available yet (python -m spyrec --help fails)")
    # -d is only a safety net: the recorder stops when the target exits, and a busy machine can
    # stretch the target's seconds of CPU into much more wall time
    command = [sys.executable, "-m", "spyrec", "-o", str(out), "-d", str(seconds * 10 + 60), "-r", str(rate),
               *options, "--", *map(str, target)]
    for _attempt in range(3):    # the recorder can lose a start-up race with a fresh child: retry
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 10 + 120)
        if result.returncode == 0 and Path(out).exists():
            return result
    pytest.skip("spyrec could not record the target (exit %d): %s"
                % (result.returncode, result.stderr.strip()[-500:]))


def record_target(tmp_path, name, script, args, seconds, rate, extra=()):
    """Record ``script args... --report FILE extra...`` (a target that reports what it did in a
    JSON file) with the real recorder as NAME.spy; return (path, the target's report)."""
    out = tmp_path / (name + ".spy")
    report = tmp_path / (name + ".json")
    result = record(out, [sys.executable, script, *args, "--report", report, *extra], seconds, rate)
    assert report.exists(), "the target did not finish: %s" % result.stderr.strip()[-500:]
    return out, json.loads(report.read_text())


def record_split(tmp_path, share, seconds=2.0, rate=200, extra=()):
    """Record tests/targets/split.py with the real recorder; return (path, the target's own
    measured split)."""
    return record_target(tmp_path, "split-%d" % round(share * 100), SPLIT, (share, seconds),
                         seconds, rate, extra)


def run_cli(*args, input=None):
    """Run the installed CLI as a subprocess (the way a CI job does)."""
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "spyanalyze", *map(str, args)], capture_output=True,
                          input=input, env=env, timeout=120)
