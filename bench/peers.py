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
* Austin 3.x ``-b`` MOJO and py-spy ``--format raw`` (collapsed stacks, aggregated: no
  timeline): read by spyanalyze's importers (spyanalyze/peers/), which know those formats.
* ``python3.15 -m profiling.sampling``: ``--binary`` for the size, replayed to ``--collapsed``
  (``tid:N;file:function:line;... count``) to count.
"""

import os
import shutil
import subprocess
import sys
import time
from collections import Counter


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
    return parsed(rec, {"trailer": rec.trailer or {}, "header": rec.header})


def parsed(rec, extra):
    """A ``Parsed`` from a ``spyformat.RecordingData`` (read from a .spy or imported).  A
    stack's leaf is its innermost Python frame: with native frames (``spyrec --native``) the
    C functions a Python line called lie below it."""
    from spyformat.records import FrameKind

    names = rec.strings
    frame_names = rec.frames["name"]
    kinds = rec.frames.get("kind")
    if kinds is not None and len(kinds) == 0:
        kinds = None  # (an empty column: every frame a Python one, as importers write it)

    def python_leaf(stack):
        if kinds is not None:
            stack = [frame for frame in stack if kinds[frame] == FrameKind.PYTHON]
        return names[frame_names[stack[-1]]] if stack else ""

    leaf_of = [python_leaf(s) for s in rec.stacks]
    counts = Counter(rec.samples["stack"].tolist())
    leaves = Counter()
    depth = 0
    for stack_id, n in counts.items():
        leaves[leaf_of[stack_id]] += n
        depth = max(depth, len(rec.stacks[stack_id]))
    return Parsed(rec.sample_count, leaves, depth, len(rec.threads), extra)


def parse_mojo(path):
    """Austin's MOJO: samples, leaf function names, deepest stack (a torn tail is dropped)."""
    from spyanalyze.peers import austin

    with open(path, "rb") as f:
        rec = austin.read_mojo(f)
    return parsed(rec, {"header": rec.header})


def parse_collapsed(path, style):
    """Collapsed stacks, root first.  ``style``: "pyspy" (``fn (file:line)``, read by spyanalyze's
    importer) or "tachyon" (``tid:N;file:fn:line``)."""
    if style == "pyspy":
        from spyanalyze.peers import pyspy

        with open(path, "rb") as f:
            rec = pyspy.read_collapsed(f)
        return parsed(rec, {})
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
            if frames and frames[0].startswith("tid:"):
                threads.add(frames[0])
                frames = frames[1:]
            if not frames:
                continue
            leaf = frames[-1]
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
