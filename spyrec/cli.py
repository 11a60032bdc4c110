"""The ``spyrec`` command: record a running or launched CPython process into a .spy file."""

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
              help="Sampling interval with units (100us, 1ms, 10ms). Default: 10ms.")
@click.option("-r", "--rate", type=float, metavar="HZ", help="Sampling rate in Hz (instead of --interval).")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the status line.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, "-V", "--version", prog_name="spyrec",
                      message="%(prog)s %(version)s (records CPython " + supported_range() + ")")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def spyrec(output, pid, duration, interval, rate, quiet, debug, command):
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
    try:
        stats = record(output, pid=pid, command=list(command) or None, interval_ns=interval_ns,
                       duration_ns=duration)
    except SpyError as exc:
        if debug:
            traceback.print_exc()
        message = str(exc)
        if isinstance(exc, PermissionDenied) and PermissionDenied.hint() not in message:
            message += ": " + PermissionDenied.hint()
        click.echo("spyrec: error: %s" % message, err=True)
        sys.exit(exc.exit_code)
    if not quiet:
        click.echo(status_line(stats, output), err=True)
    if stats.stop_reason.startswith("error: "):
        click.echo("spyrec: error: recording ended by an internal %s (samples until then kept)"
                   % stats.stop_reason[len("error: "):], err=True)
        sys.exit(1)


def status_line(stats, output):
    seconds = stats.duration_ns / 1e9
    rate = stats.rounds / seconds if seconds > 0 else 0.0
    error_share = 100.0 * stats.errors / stats.samples if stats.samples else 0.0
    where = "standard output" if output == "-" else output
    ending = stats.stop_reason
    if stats.command_status is not None:
        ending += "; command %s" % stats.command_status
    return ("spyrec: %d samples (%d rounds) in %.2f s, %.0f Hz effective, %.2f%% errors, %d late; "
            "%s; wrote %s" % (stats.samples, stats.rounds, seconds, rate, error_share, stats.late,
                              ending, where))


def main(argv=None):
    """Entry point: usage errors, like every other error, are one line and a non-zero exit."""
    try:
        spyrec.main(args=argv, prog_name="spyrec", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("spyrec: error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        hint = " (see spyrec --help)" if isinstance(exc, click.UsageError) else ""
        click.echo("spyrec: error: %s%s" % (exc.format_message(), hint), err=True)
        sys.exit(exc.exit_code)
