"""The ``spyrec`` command: record a running or launched CPython process into a .spy file."""

import os
import sys
import traceback

import click

from spyrec import __version__
from spyrec.errors import PermissionDenied, SpyError
from spyrec.layouts import supported_range
from spyrec.units import parse_time, rate_to_interval_ns

DEFAULT_RATE_HZ = 100

EPILOG = """\b
Examples:
  spyrec -o run.spy -p 1234                 record process 1234 until Ctrl-C
  spyrec -o run.spy -d 30s -r 1000 -p 1234  30 seconds at 1 kHz
  spyrec -o run.spy -- python app.py args   launch app.py and record it until it exits
  spyrec -o run.spy -- ./run-app.sh         a wrapper: its first Python process is recorded
  spyrec -o - -p 1234 | spyanalyze top -    stream the recording to another command
  spyrec where -p 1234                      every thread's stack and wait, once
  spyrec top -p 1234                        the heaviest functions, live (q quits)
"""


def _time_option(default_unit):
    def convert(ctx, param, value):
        if value is None:
            return None
        try:
            return parse_time(value, default_unit)
        except ValueError as exc:
            raise click.BadParameter(str(exc))
    return convert


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option("-o", "--output", required=True, metavar="FILE",
              help="Where to write the recording ('-' for standard output).")
@click.option("-p", "--pid", type=int, help="Record this running process.")
@click.option("-d", "--duration", callback=_time_option("s"), metavar="TIME",
              help="Stop after sampling this long (e.g. 30, 30s, 2m), counted from the first "
                   "sample. Default: until Ctrl-C or exit.")
@click.option("-i", "--interval", callback=_time_option("ms"), metavar="TIME",
              help="Sampling interval with units (100us, 1ms, 10ms), 100us at the "
                   "shortest. Default: 10ms.")
@click.option("-r", "--rate", type=float, metavar="HZ",
              help="Sampling rate in Hz (instead of --interval), 10000 at most.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the status line.")
@click.option("--realtime", is_flag=True,
              help="Sample at the lowest real-time priority (root or CAP_SYS_NICE; 2 kHz or "
                   "less): on a busy machine the target's mmap and munmap never wait for a "
                   "recorder switched away in the middle of a read.")
@click.option("-C", "--children", is_flag=True,
              help="Record every Python descendant of the process too (multiprocessing workers, "
                   "forked servers, subprocesses running Python), into the same file.")
@click.option("--kernel", is_flag=True,
              help="Put each waiting thread's kernel frames under its Python frames "
                   "(/proc/PID/task/TID/stack; root).")
@click.option("--native", is_flag=True,
              help="Put the native (C, C++, Rust) frames of the interpreter, its extensions "
                   "and libraries among the Python frames, unwound from copies of each "
                   "thread's stack taken with the Python stack (root).")
@click.option("--bpf/--no-bpf", "bpf", default=None,
              help="Copy running threads' Python stacks at CPU-clock interrupts, in the "
                   "target's own context (eBPF; root), or not: whole and of one moment "
                   "however fast they change. Where the kernel refuses, stacks are read from "
                   "outside while the thread runs on. Each copy costs the thread an interrupt "
                   "(about 20us on a virtual machine), at most 1,000 a second. Default: on "
                   "(SPYREC_BPF=0 turns it off).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, "-V", "--version", prog_name="spyrec",
                      message="%(prog)s %(version)s (records CPython " + supported_range() + ")")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def spyrec(output, pid, duration, interval, rate, quiet, realtime, children, kernel, native,
           bpf, debug, command):
    """Record every thread's Python stack of a CPython process, from outside it.

    Give either -p PID or a command after '--'. Nothing is injected into the target and it is
    never stopped: its memory is read from this process.

    A command that starts Python later (a shell script, env, uv run) is followed until a
    CPython process appears in it, within 10 s; the first one is recorded, and any others it
    starts are not. When recording ends before the command does, its whole process group is
    stopped.
    """
    if (pid is None) == (not command):
        raise click.UsageError("give either -p PID or a command to launch after '--'")
    if interval is not None and rate is not None:
        raise click.UsageError("give --interval or --rate, not both")
    if rate is not None and rate <= 0:
        raise click.BadParameter("must be greater than zero", param_hint="--rate")
    interval_ns = interval or (rate_to_interval_ns(rate) if rate else rate_to_interval_ns(DEFAULT_RATE_HZ))
    from spyrec.recorder import record
    live = LiveStatus(sys.stderr) if not quiet and sys.stderr.isatty() else None
    try:
        stats = record(output, pid=pid, command=list(command) or None, interval_ns=interval_ns,
                       duration_ns=duration, progress=live, realtime=realtime, kernel=kernel,
                       children=children, stack_copies=bpf, native=native)
    except SpyError as exc:
        if live is not None:
            live.clear()
        _fail(exc, debug)
    if live is not None:
        live.clear()
    if not quiet:
        click.echo(status_line(stats, output), err=True)
    if stats.stop_reason.startswith("error: "):
        click.echo("spyrec: error: recording ended by an internal %s (samples until then kept)"
                   % stats.stop_reason[len("error: "):], err=True)
        sys.exit(1)


class LiveStatus:
    """The one line rewritten in place while recording to a terminal, as py-spy record shows:
    time sampled, samples, rounds a second, errors."""

    __slots__ = ("stream", "shown")

    def __init__(self, stream):
        self.stream = stream
        self.shown = False

    def __call__(self, stats, elapsed_ns):
        if not self._in_front():
            return
        seconds = elapsed_ns / 1e9
        errors = 100.0 * stats.errors / stats.samples if stats.samples else 0.0
        self.stream.write("\r\033[Kspyrec: %.1f s, %d samples, %.0f Hz, %.1f%% errors (Ctrl-C "
                          "to stop)" % (seconds, stats.samples, stats.rounds / seconds, errors))
        self.stream.flush()
        self.shown = True

    def _in_front(self):
        """Only while spyrec has the terminal: a launched command that has it is left its
        screen, and a write from the background could stop spyrec (``stty tostop``)."""
        try:
            return os.tcgetpgrp(self.stream.fileno()) == os.getpgrp()
        except (OSError, ValueError, AttributeError):
            return False

    def clear(self):
        if self.shown and self._in_front():
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def status_line(stats, output):
    seconds = stats.duration_ns / 1e9
    rate = stats.rounds / seconds if seconds > 0 else 0.0
    error_share = 100.0 * stats.errors / stats.samples if stats.samples else 0.0
    where = "standard output" if output == "-" else output
    ending = stats.stop_reason
    if stats.command_status is not None:
        ending += "; command %s" % stats.command_status
    busy = (", %d rounds left out while the machine was busy" % stats.throttled
            if stats.throttled else "")
    if stats.copied_stacks:
        busy += ", %d stacks copied at interrupts" % stats.copied_stacks
    if stats.native_stacks or stats.native_unmerged:
        busy += ", %d with native frames" % stats.native_stacks
        if stats.native_unmerged:
            busy += " (%d more left with their Python frames only)" % stats.native_unmerged
    return ("spyrec: %d samples (%d rounds) in %.2f s, %.0f Hz effective, %.2f%% errors, %d late%s; "
            "%s; wrote %s" % (stats.samples, stats.rounds, seconds, rate, error_share, stats.late,
                              busy, ending, where))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-p", "--pid", type=int, required=True, help="The process to look at.")
@click.option("--kernel", is_flag=True,
              help="Also each waiting thread's kernel frames (/proc/PID/task/TID/stack; root).")
@click.option("--native", is_flag=True,
              help="Also the native frames among the Python frames (root).")
@click.option("--tasks", is_flag=True,
              help="Also every asyncio task, under the tasks awaiting it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def where(pid, kernel, native, tasks, as_json, debug):
    """Print every thread's Python stack once, with its state, GIL, CPU time and, when it
    waits, the system call and kernel function it waits in: for a process that hangs or
    crawls.  Nothing is stopped or injected."""
    from spyrec import where as reading
    from spyformat.text import printable
    try:
        report = reading.where(pid, kernel=kernel, native=native, tasks=tasks)
    except SpyError as exc:
        _fail(exc, debug)
    click.echo(reading.as_json(report) if as_json else reading.as_text(report, printable),
               nl=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-p", "--pid", type=int, required=True, help="The process to watch.")
@click.option("-o", "--output", metavar="FILE", help="Also keep the recording in FILE.")
@click.option("-r", "--rate", type=float, default=float(DEFAULT_RATE_HZ), show_default=True,
              metavar="HZ", help="Sampling rate in Hz, 10000 at most.")
@click.option("-d", "--duration", callback=_time_option("s"), metavar="TIME",
              help="Stop after this long. Default: until q or Ctrl-C.")
@click.option("--idle", is_flag=True, help="Count threads that are not running too.")
@click.option("-C", "--children", is_flag=True,
              help="Count the process's Python descendants too (see spyrec --help).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def top(pid, output, rate, duration, idle, children, debug):
    """Show the process's heaviest functions, refreshed every second, as py-spy top does: the
    share of the last second's samples in which each function was innermost (%Own) or on the
    stack (%Total), and the time so far. Quit with q or Ctrl-C."""
    if rate <= 0:
        raise click.BadParameter("must be greater than zero", param_hint="--rate")
    from spyrec.recorder import SHORTEST_INTERVAL_NS, record
    from spyrec.sinks import NullSink
    from spyformat.terminal import Keys
    from spyrec.top import Screen, Tally
    interval_ns = rate_to_interval_ns(rate)
    screen = Screen(sys.stdout, pid, max(interval_ns, SHORTEST_INTERVAL_NS))  # (as recorded)

    def observe(writer, process):
        tally = Tally(writer if output else NullSink(), idle=idle)  # nothing kept: nothing encoded
        screen.watch(tally, process)
        return tally

    keys = Keys()
    try:
        stats = record(output or os.devnull, pid=pid, interval_ns=interval_ns,
                       duration_ns=duration, progress=screen, observe=observe,
                       should_stop=keys.quit, children=children)
    except SpyError as exc:
        screen.close()
        keys.close()
        _fail(exc, debug)
    screen.close()
    keys.close()
    if output:
        click.echo(status_line(stats, output), err=True)


def _fail(exc, debug):
    """One line for a SpyError (a traceback too with --debug), and its exit code."""
    if debug:
        traceback.print_exc()
    message = str(exc)
    if isinstance(exc, PermissionDenied) and PermissionDenied.hint() not in message:
        message += ": " + PermissionDenied.hint()
    click.echo("spyrec: error: %s" % message, err=True)
    sys.exit(exc.exit_code)


def main(argv=None):
    """Entry point: usage errors, like every other error, are one line and a non-zero exit.
    ``spyrec where ...`` reads a process once; anything else records."""
    args = sys.argv[1:] if argv is None else list(argv)
    subcommands = {"where": where, "top": top}
    if args[:1] and args[0] in subcommands:
        command, name, args = subcommands[args[0]], "spyrec " + args[0], args[1:]
    else:
        command, name = spyrec, "spyrec"
    try:
        command.main(args=args, prog_name=name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("spyrec: error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        hint = " (see %s --help)" % name if isinstance(exc, click.UsageError) else ""
        click.echo("spyrec: error: %s%s" % (exc.format_message(), hint), err=True)
        sys.exit(exc.exit_code)
