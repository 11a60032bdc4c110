"""One recording from start to finish: attach or launch, write the header, sample, close.

Stopping is cooperative: SIGINT and SIGTERM only set a flag that the sampling loop checks
between rounds, so the writer always gets to flush its last batch and the trailer.  A recorder
killed with SIGKILL still leaves a readable file up to its last flush (at most a second old).
"""

import contextlib
import os
import resource
import signal
import socket
import stat
import sys
import tempfile
import time
from typing import Callable, ContextManager, Optional, Sequence

from spyrec import __version__
from spyrec.errors import OutputError, PermissionDenied, SpyError
from spyrec.descendants import Descendants
from spyrec.interpreter import PythonProcess
from spyrec.process import read_cmdline, read_cwd
from spyrec.launcher import Launched, exit_status
from spyrec.sampler import Sampler, SamplingStats
from spyrec.sinks import Sink
from spyrec.bpf import BpfUnavailable
from spyformat import SpyWriter

#: Open files this process asks for at most: four per thread of a target with 250,000 threads
#: (the kernel's default ``fs.nr_open`` is 1,048,576).
MAX_DESCRIPTORS = 1 << 20

class StopFlag:
    """Set by SIGINT/SIGTERM; checked by the sampling loop between rounds."""

    def __init__(self):
        self.signal = None

    def __call__(self):
        return self.signal is not None

    def install(self):
        def handler(signum, _frame):
            self.signal = signum
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        return previous


def warn(message):
    sys.stderr.write("spyrec: warning: %s\n" % message)


class Output:
    """Where the recording goes: standard output, or a file that is only given its name once
    the target is attached.

    The file is written as a hidden temporary file beside ``path`` and renamed over it
    (``publish``) as soon as the header is written, so a recording that cannot start leaves an
    existing file, or what a symlink there points to, untouched, while one that has started is
    under its name from its first second on (crash-safe from there).  Creating the temporary
    file early makes a bad path fail before anything is started.
    """

    def __init__(self, path):
        self.path = path
        self.temporary = None
        if path == "-":
            self.stream = sys.stdout.buffer
            return
        try:
            special = not stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            special = False
        if special:  # a device or a pipe (/dev/stdout, a FIFO): written as it is, never replaced
            try:
                self.stream = open(path, "wb")
            except OSError as exc:
                raise OutputError("cannot write %s: %s" % (path, exc.strerror or exc))
            return
        directory, name = os.path.split(os.path.abspath(path))
        try:
            fd, self.temporary = tempfile.mkstemp(prefix="." + name + ".", suffix=".partial",
                                                  dir=directory)
            mask = os.umask(0)
            os.umask(mask)
            os.fchmod(fd, 0o666 & ~mask)  # what open() would have given it
        except OSError as exc:
            raise OutputError("cannot write %s: %s" % (path, exc.strerror or exc))
        self.stream = os.fdopen(fd, "wb")

    def publish(self):
        """Give the recording its name (once its header is out)."""
        self.stream.flush()
        if self.temporary is None:
            return
        try:
            os.replace(self.temporary, self.path)
        except OSError as exc:
            raise OutputError("cannot write %s: %s" % (self.path, exc.strerror or exc))
        self.temporary = None

    def close(self):
        """Close the file; remove it if it never got its name (nothing was recorded)."""
        if self.path == "-":
            return
        try:
            self.stream.close()
        except OSError:
            pass  # a write error was reported already; the file keeps what reached it
        if self.temporary is not None:
            os.unlink(self.temporary)


def _check_kernel_stacks(pid: int) -> None:
    """Fail at once, not with every sample, when the kernel will not show this process's
    kernel stacks (``/proc/PID/task/TID/stack`` is readable by root only)."""
    try:
        with open("/proc/%d/task/%d/stack" % (pid, pid), "rb") as f:
            f.read(1)
    except PermissionError:
        raise PermissionDenied("--kernel: the kernel stacks of process %d are not readable "
                               "(/proc/PID/task/TID/stack needs root)" % pid) from None
    except OSError:
        pass  # the process is ending: the recording says so


def record(output: str, pid: Optional[int] = None, command: Optional[Sequence[str]] = None,
           interval_ns: int = 10_000_000, duration_ns: Optional[int] = None,
           progress: Optional[Callable[[SamplingStats, int], None]] = None,
           observe: Optional[Callable[[SpyWriter, PythonProcess], Sink]] = None,
           should_stop: Optional[Callable[[], bool]] = None,
           realtime: bool = False, kernel: bool = False, children: bool = False,
           stack_copies: Optional[bool] = None, native: bool = False) -> SamplingStats:
    """Record a process (``pid``) or a command (``command``) into ``output``; return the stats.
    ``progress(stats, elapsed_ns)`` is called about twice a second (see ``Sampler.run``).
    ``observe(writer, process)``, once attached, returns what the sampler writes to instead
    of the writer (one that passes everything on: the live view); ``should_stop()`` ends the
    recording, as a signal does; ``realtime``: see ``spyrec.scheduling.LowLatency``;
    ``kernel``: a sleeping thread's kernel frames under its Python frames (root);
    ``children``: every Python descendant of the target too (see spyrec.descendants);
    ``stack_copies``: running threads' stacks copied at interrupts where the kernel allows
    (see spyrec.stackcapture; None: as ``SPYREC_BPF`` says, on unless it is 0);
    ``native``: native frames among the Python frames (see spyrec.nativestacks; root, and
    the copies)."""
    if native and stack_copies is False:
        raise SpyError("--native takes the native stacks with the stack copies: drop --no-bpf")
    if stack_copies is None:
        stack_copies = native or os.environ.get(BPF_ENV) != "0"
    if interval_ns < SHORTEST_INTERVAL_NS:
        warn("sampling every %gus, not every %gus: rounds closer than that follow the program's "
             "own rhythm and sample its states unevenly"
             % (SHORTEST_INTERVAL_NS / 1e3, interval_ns / 1e3))
        interval_ns = SHORTEST_INTERVAL_NS
    out = Output(output)
    stream = out.stream
    writer = None
    launched = None
    stop = StopFlag()
    previous_handlers = stop.install()
    descriptors = _more_descriptors()
    try:
        if command:
            launched = Launched(command, stdout_to_stderr=(output == "-"))
            process = launched.find_python(stop, hold=True)
            hold: ContextManager[None] = launched.held(process.pid)
        else:
            # (None, with no command either, is refused there as an invalid PID)
            process = PythonProcess.attach(pid)  # type: ignore[arg-type]
            hold = contextlib.nullcontext()
        with hold:
            guessed = process.layout.guessed_from
            if guessed is not None:
                warn("Python %s is newer than spyrec knows; its _Py_DebugOffsets passed every "
                     "check, so it is read with the %d.%d field list"
                     % ((process.version_string,) + guessed))
            if kernel:
                _check_kernel_stacks(process.pid)
            if native:
                start_native(process, interval_ns)
            origin = time.monotonic_ns()
            writer = SpyWriter(stream)
            _write_start(writer, process, origin, interval_ns, "launch" if command else "attach")
            out.publish()
            sink = writer if observe is None else observe(writer, process)
            if stack_copies and not native:
                start_copies(process, interval_ns)
            sampler = Sampler(process, sink, interval_ns, origin, kernel=kernel)
            if children:
                def child_sampler(child):
                    if stack_copies:
                        start_copies(child, interval_ns, native)
                    return Sampler(child, sink, interval_ns, origin, kernel=kernel,
                                   stats=sampler.stats)
                sampler.descendants = Descendants(process.pid, child_sampler, sink, origin)
        stats = sampler.run(stop if should_stop is None else lambda: stop() or should_stop(),
                            duration_ns, progress, realtime)
        if stats.stop_reason == "interrupted" and stop.signal is not None:
            stats.stop_reason = "interrupted (%s)" % signal.Signals(stop.signal).name
        process_end = {"pid": process.pid, "end_ns": stats.end_ns}
        if launched is not None:
            exit_code = finish_command(launched, stats.stop_reason, stop)
            stats.command_status = exit_status(exit_code)
            if process.pid == launched.pid:  # a Python started by the command is not our child
                process_end["exit_code"] = exit_code
        writer.process(**process_end)
        writer.close(stats.trailer())
        process.close()
        stats.bytes_written = writer.bytes_written
        return stats
    except BrokenPipeError:
        raise OutputError("the output pipe was closed") from None
    except OSError as exc:  # the disk is full, the file system gone: the target is left as it is
        where = "standard output" if output == "-" else output
        raise OutputError("cannot write %s: %s; it holds what was written before"
                          % (where, exc.strerror or exc)) from None
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if descriptors is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, descriptors)
        if launched is not None:
            launched.close()
        out.close()


#: The shortest interval recorded.  Back to back, a round after a change of stack takes
#: longer (more frames parsed), so the next one comes later after some of the program's
#: states than after others, and the samples lock onto its rhythm; spaced by this much they
#: stay within about a point of the program's own split (docs/benchmarks.md, "Why "max"
#: samples the states unevenly").
SHORTEST_INTERVAL_NS = 100_000

#: ``SPYREC_BPF=0`` in the environment: no stack copied at interrupts unless asked for.
BPF_ENV = "SPYREC_BPF"


def start_copies(process, interval_ns, native=False, switches=True):
    """Copies of running threads' stacks at interrupts, twice per round (so that a thread
    running all along has one taken since the last round) up to the copies' own limit (see
    spyrec.stackcapture.MIN_PERIOD_NS), where the kernel allows; with ``switches``, the
    threads' switches recorded too (see StackCapture.at)."""
    try:
        process.start_capture(2e9 / interval_ns, native, switches)
    except BpfUnavailable:
        pass  # read from outside, as with --no-bpf (the status line counts copied stacks)


def start_native(process, interval_ns):
    """The copies with native stacks, or a clear refusal: a recording asked for native frames
    is not made without them."""
    try:
        process.start_capture(2e9 / interval_ns, native=True)
    except BpfUnavailable as exc:
        raise SpyError("--native: the kernel refused the CPU-clock events that copy native "
                       "stacks (%s); it needs root (CAP_BPF and CAP_PERFMON) and Linux 5.8+"
                       % exc) from None


def _write_start(writer, process, origin, interval_ns, mode):
    """The HEADER and the target's PROCESS record, as the recording starts."""
    argv = read_cmdline(process.pid)
    writer.write_header({
        "recorder": "spyrec %s" % __version__, "start_wall_ns": time.time_ns(),
        "start_mono_ns": origin, "interval_ns": interval_ns, "host": socket.gethostname(),
        "pid": process.pid, "argv": argv, "cwd": read_cwd(process.pid),
        "python_version": process.version_string, "python_executable": process.executable,
        "mode": mode,
    })
    writer.process(pid=process.pid, argv=argv, python_version=process.version_string,
                   executable=process.executable, start_ns=0)


def _more_descriptors():
    """Raise this process's limit on open files to its hard limit; return the limit it had
    (None when unchanged).  Each thread of the target keeps three or four /proc files open
    (spyrec.procstats): at the usual soft limit of 1,024, a target's threads past the 250th
    or so would be recorded without CPU time or state."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, MAX_DESCRIPTORS) if hard != resource.RLIM_INFINITY else MAX_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return soft, hard
        except (ValueError, OSError):
            pass
    return None


def finish_command(launched, stop_reason, stop):
    """End a launched command: wait for it when its Python ended by itself (it exited, or
    replaced its program: the command is still what the user asked to run, and a wrapper may
    have more to do), stop its whole tree when the recording ended for another reason."""
    if stop_reason == "target exited" or stop_reason.startswith("target replaced"):
        return launched.wait(stop)
    return launched.stop()
