"""Profilers the recorder benchmark drives: how to start each one attached to a PID, and how to
read what it wrote into a common summary.

Every profiler is described by a ``Profiler`` with ``available()`` (installed and able to run
this target?) and ``command(pid, rate, out)``; every output is read by a parser that returns a
``Parsed``: total stack samples, samples per leaf function, and the deepest stack seen.  The
benchmark (bench_record.py) only counts samples whose leaf is ``heavy`` or ``light``, the two
leaves of bench/targets/gated.py, so idle threads, start-up and shutdown samples and the
profilers' different idle policies all drop out of the comparison.

Formats read here (each profiler's most compact file, as far as it can be read back):

* spyrec ``.spy``: ``spyformat.read_recording``.
* Austin 3.x ``-b`` MOJO (format version 3): a stream of one-byte event ids followed by
  varints (6 payload bits and a sign bit in the first byte, 7 bits in the next ones) and
  NUL-terminated strings.  A ``STACK`` event starts a sample; ``FRAME`` defines a frame (key,
  file and scope string keys, line, end line, column, end column); ``FRAME_REF`` appends a
  defined frame to the current sample, root first; ``STRING`` defines a string.
* py-spy ``--format raw``: collapsed stacks, ``frame;frame;... count`` with frames
  ``function (file:line)``, root first.  Aggregated: no timeline.
* ``python3.15 -m profiling.sampling``: ``--binary`` for the size, replayed to ``--collapsed``
  (``tid:N;file:function:line;... count``) to count.
"""

import os
import shutil
import subprocess
import sys
import time
from collections import Counter

MOJO_METADATA, MOJO_STACK, MOJO_FRAME, MOJO_FRAME_INVALID, MOJO_FRAME_REF = 1, 2, 3, 4, 5
MOJO_FRAME_KERNEL, MOJO_GC, MOJO_IDLE, MOJO_METRIC_TIME, MOJO_METRIC_MEMORY = 6, 7, 8, 9, 10
MOJO_STRING, MOJO_STRING_REF = 11, 12


class ParseError(Exception):
    pass


class Parsed:
    """What a profiler's output says: samples, samples by leaf function name, deepest stack."""

    def __init__(self, samples=0, leaves=None, max_depth=0, threads=0, extra=None):
        self.samples = samples
        self.leaves = leaves if leaves is not None else Counter()
        self.max_depth = max_depth
        self.threads = threads
        self.extra = extra or {}

    def busy(self, names=("heavy", "light")):
        return sum(self.leaves.get(name, 0) for name in names)


# --------------------------------------------------------------------------------------------
# Parsers


def parse_spy(path):
    from spyformat import read_recording

    with open(path, "rb") as f:
        rec = read_recording(f)
    names = rec.strings
    frame_names = rec.frames["name"]
    leaf_of = [names[frame_names[s[-1]]] if s else "" for s in rec.stacks]
    counts = Counter(rec.samples["stack"].tolist())
    leaves = Counter()
    depth = 0
    for stack_id, n in counts.items():
        leaves[leaf_of[stack_id]] += n
        depth = max(depth, len(rec.stacks[stack_id]))
    return Parsed(rec.sample_count, leaves, depth, len(rec.threads),
                  {"trailer": rec.trailer or {}, "header": rec.header})


def parse_mojo(path):
    """Austin's MOJO (versions 1-3): samples, leaf function names, deepest stack."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:3] != b"MOJ":
        raise ParseError("not a MOJO file")
    reader = MojoReader(data, 3)
    mojo = MojoStacks(reader.varint())
    try:
        while reader.pos < len(data):
            mojo.event(reader.byte(), reader)
    except IndexError:
        pass                    # a torn tail: count what was complete
    return mojo.parsed()


class MojoReader:
    """A cursor over MOJO bytes: one-byte event ids, varints (6 payload bits and a sign bit in
    the first byte, 7 bits in the next ones) and NUL-terminated strings."""

    def __init__(self, data, pos):
        self.data = data
        self.pos = pos

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self):
        b = self.byte()
        n = b & 0x3F
        sign = b & 0x40
        shift = 6
        while b & 0x80:
            b = self.byte()
            n |= (b & 0x7F) << shift
            shift += 7
        return -n if sign else n

    def string(self):
        stop = self.data.index(b"\0", self.pos)
        value = self.data[self.pos:stop]
        self.pos = stop + 1
        return value


class MojoStacks:
    """What the events of a MOJO stream say: samples by leaf, threads, the deepest stack."""

    def __init__(self, version):
        self.version = version
        self.strings = {}
        self.frames = {}                # key -> scope string key
        self.metadata = {}
        self.leaves = Counter()
        self.threads = set()
        self.samples = 0
        self.depth = 0
        self.leaf = None
        self.max_depth = 0

    def event(self, event, reader):
        if event == MOJO_FRAME_REF:
            self.leaf = reader.varint()
            self.depth += 1
        elif event == MOJO_STACK:
            self.end_sample()
            self.samples += 1
            self.leaf = None
            self.depth = 0
            reader.varint()                         # pid
            if self.version >= 3:
                reader.varint()                     # interpreter id
            self.threads.add(reader.string())
        elif event == MOJO_FRAME:
            key = reader.varint()
            reader.varint()                         # file
            scope = reader.varint()
            for _ in range(4 if self.version >= 2 else 1):
                reader.varint()                     # line (and end line, columns)
            self.frames[key] = scope
        elif event == MOJO_STRING:
            key = reader.varint()
            self.strings[key] = reader.string()
        elif event in (MOJO_METRIC_TIME, MOJO_METRIC_MEMORY, MOJO_STRING_REF):
            reader.varint()
        elif event == MOJO_METADATA:
            key = reader.string()
            self.metadata[key.decode("utf-8", "replace")] = reader.string().decode("utf-8", "replace")
        elif event == MOJO_FRAME_KERNEL:
            reader.string()
        elif event not in (MOJO_FRAME_INVALID, MOJO_GC, MOJO_IDLE):
            raise ParseError("unknown MOJO event %d at offset %d" % (event, reader.pos - 1))

    def end_sample(self):
        """Count the sample read so far (its leaf and depth), if there is one."""
        if self.samples:
            self.leaves[self.frames.get(self.leaf)] += 1
            self.max_depth = max(self.max_depth, self.depth)

    def parsed(self):
        self.end_sample()
        named = Counter()
        for scope, n in self.leaves.items():
            name = self.strings.get(scope, b"?") if scope is not None else b""
            named[name.decode("utf-8", "replace")] += n
        return Parsed(self.samples, named, self.max_depth, len(self.threads),
                      {"metadata": self.metadata})


def parse_collapsed(path, style):
    """Collapsed stacks, root first.  ``style``: "pyspy" (``fn (file:line)``) or "tachyon"
    (``tid:N;file:fn:line``)."""
    leaves = Counter()
    threads = set()
    samples = 0
    max_depth = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            frames = stack.split(";")
            if style == "tachyon" and frames and frames[0].startswith("tid:"):
                threads.add(frames[0])
                frames = frames[1:]
            if not frames:
                continue
            leaf = frames[-1]
            if style == "pyspy":
                name = leaf.split(" (", 1)[0]
            else:
                parts = leaf.rsplit(":", 2)
                name = parts[1] if len(parts) == 3 else leaf
            leaves[name] += n
            samples += n
            max_depth = max(max_depth, len(frames))
    return Parsed(samples, leaves, max_depth, len(threads))


# --------------------------------------------------------------------------------------------
# Profilers


class Profiler:
    """One way of recording a PID.  Subclasses fill in the command and the parser."""

    name = "?"
    ext = ".out"
    #: the target runs inside the sid root (CPython 3.15) rather than on the host
    in_root = False
    #: the output holds every sample (a timeline), not aggregated counts
    timeline = True

    def available(self):
        """None when it can run, else a short reason ("not installed")."""
        return None

    def is_ready(self, out, err_path, pid):
        """True once the profiler (process ``pid``) is sampling, as far as can be seen."""
        return True

    def command(self, pid, rate, out):
        raise NotImplementedError

    def host_path(self, out):
        """Where the profiler's output ``out`` lands on the host."""
        return out

    def finish(self, out):
        """Turn the raw output into (bytes on disk, Parsed)."""
        raise NotImplementedError


class Spyrec(Profiler):
    name = "spyrec"
    ext = ".spy"

    def __init__(self, python):
        self.python = python

    def command(self, pid, rate, out):
        if rate == "max":
            timing = ["-i", "1us"]
        else:
            timing = ["-r", str(rate)]
        return [self.python, "-m", "spyrec", "-q", "-o", out] + timing + ["-p", str(pid)]

    def is_ready(self, out, err_path, pid):
        try:
            return os.path.getsize(out) > 64       # preamble + HEADER chunk: attached
        except OSError:
            return False

    def finish(self, out):
        return os.path.getsize(out), parse_spy(out)


class SpyrecPeer(Spyrec):
    """spyrec, run from this checkout; ``supports`` says whether it records this target."""

    def __init__(self, target):
        super().__init__(sys.executable)
        self.target = target
        self.reason = None

    def available(self):
        return self.reason

    def probe(self):
        """Attach once in-process: a version spyrec cannot walk yet is "not supported yet"."""
        from spyrec.errors import SpyError, UnsupportedPython
        from spyrec.interpreter import PythonProcess

        ready, proc = self.target.start(["--no-gate", "--seconds", "2"])
        try:
            time.sleep(0.2)
            with PythonProcess.attach(ready["pid"]) as process:
                # One walk may tear (the target is running); 50 in a row will not.
                for _ in range(50):
                    if any(s.frames and not s.torn for s in process.sample_threads()):
                        break
                    time.sleep(0.005)
                else:
                    self.reason = "failed: attached but found no stack"
        except UnsupportedPython as exc:
            self.reason = "not supported yet (%s)" % str(exc)[:160]
        except SpyError as exc:
            # 3.14/3.15 in the sid root come with another task; until then attach fails there.
            prefix = "not supported yet" if self.target.root else "failed"
            self.reason = "%s (attach fails: %s)" % (prefix, str(exc)[:160])
        finally:
            proc.kill()
            proc.wait()


class Austin(Profiler):
    name = "austin"
    ext = ".mojo"

    def __init__(self, path):
        self.path = path

    def available(self):
        return None if self.path and os.access(self.path, os.X_OK) else "not installed"

    def command(self, pid, rate, out):
        interval = "0" if rate == "max" else str(max(1, int(round(1e6 / rate))))
        return [self.path, "-b", "-i", interval, "-o", out, "-p", str(pid)]

    def finish(self, out):
        return os.path.getsize(out), parse_mojo(out)


class PySpy(Profiler):
    ext = ".raw"
    timeline = False
    #: py-spy sleeps 1/rate between samples; this asks for "as fast as it goes"
    MAX_RATE = 1_000_000

    def __init__(self, path, nonblocking):
        self.path = path
        self.nonblocking = nonblocking
        self.name = "py-spy --nonblocking" if nonblocking else "py-spy"

    def available(self):
        return None if self.path and os.access(self.path, os.X_OK) else "not installed"

    def command(self, pid, rate, out):
        rate = self.MAX_RATE if rate == "max" else rate
        cmd = [self.path, "record", "--idle", "-r", str(int(rate)), "-f", "raw", "-o", out,
               "-p", str(pid)]
        if self.nonblocking:
            cmd.insert(2, "--nonblocking")
        return cmd

    def is_ready(self, out, err_path, pid):
        try:
            with open(err_path, "rb") as f:
                return b"Sampling process" in f.read()
        except OSError:
            return False

    def finish(self, out):
        return os.path.getsize(out), parse_collapsed(out, "pyspy")


class Tachyon(Profiler):
    """CPython 3.15's ``profiling.sampling``, run inside the sid root against a 3.15 target."""

    name = "profiling.sampling"
    ext = ".bin"
    in_root = True
    MAX_RATE = 1_000_000

    def __init__(self, root):
        self.root = root

    def available(self):
        if not self.root:
            return "not installed (no sid root: run scripts/make-sid-root.sh)"
        if not os.access(os.path.join(self.root, "usr/bin/python3.15"), os.X_OK):
            return "not installed (no python3.15 in %s)" % self.root
        if not os.path.ismount(os.path.join(self.root, "proc")):
            return "not usable (%s/proc is not mounted: run scripts/make-sid-root.sh)" % self.root
        return None

    def is_ready(self, out, err_path, pid):
        """Its sampler module is loaded (attaching follows at once)."""
        try:
            with open("/proc/%d/maps" % pid, "rb") as f:
                return b"_remote_debugging" in f.read()
        except OSError:
            return False

    def inside(self, out):
        """``out`` is a host path under ROOT; the profiler sees it without the ROOT prefix."""
        return "/" + os.path.relpath(out, self.root)

    def command(self, pid, rate, out):
        rate = self.MAX_RATE if rate == "max" else rate
        return ["chroot", self.root, "python3.15", "-m", "profiling.sampling", "attach",
                "-r", str(int(rate)), "-a", "--binary", "-o", self.inside(out), str(pid)]

    def finish(self, out):
        collapsed = out + ".txt"
        subprocess.run(["chroot", self.root, "python3.15", "-m", "profiling.sampling", "replay",
                        "--collapsed", "-o", self.inside(collapsed), self.inside(out)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        return os.path.getsize(out), parse_collapsed(collapsed, "tachyon")


def find_peer(name, extra_dirs=("/tmp/peers/bin",)):
    """A peer executable: on PATH, beside this Python (the test extra installs py-spy in
    its venv), else in the usual peers venv."""
    found = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if found:
        return found
    for d in extra_dirs:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None
