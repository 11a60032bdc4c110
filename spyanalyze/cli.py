"""The ``spyanalyze`` command: thin click commands over the notebook API.

Conventions: ``--help`` on every command; ``-o FILE`` for output, ``-`` (the default) for
standard output and, as an input path, standard input.  Exit codes: 0 success, 1 an error the
user can act on (one ``spyanalyze: error: ...`` line on stderr, no traceback unless
``--debug``), 2 a usage error (click's), 3 a ``diff --fail-if`` gate that failed.  A recording
that lost data (a torn tail, no trailer) gets one ``spyanalyze: warning: ...`` line on stderr
in every command, and is an error under ``--strict``.
"""

import glob
import io
import os
import shutil
import sys
import time

import click

import spyformat
from spyformat import limits
from spyformat.errors import SpyError

from spyanalyze import filters, frames, peers, plot, views
from spyanalyze.diff import Gate, check_gates, diff, write_collapsed_diff
from spyanalyze.errors import CorruptRecording, IncompleteRecording, UnreadableFile
from spyanalyze.export import FORMATS, flamegraph
from spyanalyze.recording import load
from spyanalyze.tables import WEIGHTS
from spyanalyze.text import printable
from spyanalyze.writer import write as write_spy

GATE_FAILED = 3


class SpyanalyzeGroup(click.Group):
    """Turns every ``SpyError`` into one line on stderr and exit 1 (traceback with --debug).

    Usage errors are one line too (click's default prints the usage block first), exit 2.
    """

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("spyanalyze: error: aborted", err=True)
            sys.exit(130)
        except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:
            click.echo(exc.format_message(), err=True)      # bare `spyanalyze`: the help
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = " (see %s --help)" % exc.ctx.command_path
            click.echo("spyanalyze: error: %s%s" % (exc.format_message(), hint), err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpyError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo("spyanalyze: error: %s" % printable(exc), err=True)
            ctx.exit(getattr(exc, "exit_code", 1) or 1)
        except BrokenPipeError:          # `spyanalyze export ... | head`: not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())     # so the exit-time flush cannot fail again
            ctx.exit(0)


def parse_max_memory(ctx, param, value):
    if value is None:
        return None
    try:
        return limits.parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc))


@click.group(cls=SpyanalyzeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show a traceback for errors.")
@click.option("--strict", is_flag=True,
              help="Refuse a recording that lost data (a torn tail, no trailer) instead of warning.")
@click.option("--max-memory", metavar="SIZE", callback=parse_max_memory,
              help="Memory a recording may take to load (e.g. 2G; default: half the machine's); "
                   "a file needing more is refused.")
@click.version_option(package_name="spyrec", prog_name="spyanalyze")
def main(debug, strict, max_memory):
    """Analyse .spy recordings made by spyrec: summaries, filters, diffs and exports."""


def global_options():
    return click.get_current_context().find_root().params


def load_recording(path, all_native=False):
    """``load`` with the global options; what the file lost is one warning line on stderr."""
    options = global_options()
    recording = load(path, strict=options["strict"], max_memory=options["max_memory"],
                     all_native=all_native)
    warn_lost(path, recording.lost)
    return recording


def warn_lost(path, lost):
    if lost:
        click.echo("spyanalyze: warning: %s lost data: %s" % (printable(path), printable("; ".join(lost))),
                   err=True)


# ------------------------------------------------------------------------------------------
# Shared options

RECORDING = click.Path(dir_okay=False, allow_dash=True)
WEIGHT_HELP = "Weigh samples by count, wall time or CPU time."


def filter_options(idle_default):
    """The filter options shared by top, diff, export and filter (see spyanalyze.filters)."""
    def decorate(command):
        options = [
            click.option("--pid", "pids", multiple=True, type=int, help="Keep this process (repeatable)."),
            click.option("--thread", "threads", multiple=True, metavar="ID|GLOB",
                         help="Keep this thread: native or Python thread id, or a name glob (repeatable)."),
            click.option("--start", metavar="TIME",
                         help="Keep samples from TIME on (seconds since the start, or 200ms, 1.5s)."),
            click.option("--end", metavar="TIME", help="Keep samples before TIME."),
            click.option("--include", multiple=True, metavar="PATTERN",
                         help="Keep samples whose stack has a matching frame: a function glob, "
                              "file:GLOB, stdlib or site-packages (repeatable)."),
            click.option("--exclude", multiple=True, metavar="PATTERN",
                         help="Drop samples whose stack has a matching frame (repeatable)."),
            click.option("--focus", metavar="PATTERN",
                         help="Keep samples through a matching frame and cut stacks to start there."),
            click.option("--prune", multiple=True, metavar="PATTERN",
                         help="Hide matching frames (e.g. stdlib, site-packages); their time goes "
                              "to the caller (repeatable)."),
            click.option("--frames", metavar="TYPES",
                         help="Show only these frame types, comma-separated: python, native, "
                              "kernel (default: all there are); the others' time goes to "
                              "their callers."),
            click.option("--all-native", is_flag=True,
                         help="Keep every native frame recorded (spyrec --native): the "
                              "interpreter's call plumbing and the frames above a thread's "
                              "first Python frame too, left out by default as py-spy --native "
                              "leaves them out (filter always keeps them)."),
            click.option("--idle", type=click.Choice(filters.IDLE_CHOICES), default=idle_default,
                         show_default=True, help="Samples of idle threads: keep, drop, or keep only them."),
            click.option("--gil", type=click.Choice(filters.GIL_CHOICES), default="any", show_default=True,
                         help="Keep samples by whether the thread held the GIL."),
        ]
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


_FILTER_KEYS = ("pids", "threads", "start", "end", "include", "exclude", "focus", "prune", "frames",
                "idle", "gil")


def filtered(recording, options):
    """Apply the shared filter options; a filter that leaves nothing is an error."""
    criteria = {key: options.pop(key) for key in _FILTER_KEYS}
    try:
        return filters.apply(recording, allow_empty=False, **criteria)
    except ValueError as exc:
        raise click.UsageError(str(exc))


def output_option(binary=False):
    return click.option("-o", "--output", type=click.File("wb" if binary else "w", lazy=True),
                        default="-", show_default=True, help="Output file; - is standard output.")


def terminal_width():
    return shutil.get_terminal_size((120, 24)).columns


def render(rows, headers, right=()):
    """A plain text table that fits the terminal: the last column is cut to fit."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    room = terminal_width() - sum(widths[:-1]) - 2 * (len(widths) - 1)
    widths[-1] = max(20, min(widths[-1], room))
    lines = []
    for row in [list(headers)] + rows:
        cells = []
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                cell = cell[:widths[i] - 1] + "…"
            cells.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def amount(value, weight):
    """A count, or nanoseconds shown as seconds."""
    return "%d" % value if weight == "samples" else "%.3fs" % (value / 1e9)


def label(row, by):
    """A row's frame label (``spyanalyze.frames.label``); by function, its lowest sampled line."""
    if by == "file":
        return row["module"]
    return frames.label(row["qualname"], row["module"], row["line"], row.get("source"))


def hertz(value):
    return "%.0f Hz" % value if value else "?"


# ------------------------------------------------------------------------------------------
# Commands


@main.command()
@click.argument("path", type=RECORDING)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(path, as_json):
    """Summarise a recording: what was recorded, how, and how well (recorder health).

    The rate achieved is given as rounds per second (a round samples every thread once) and per
    thread while it lived: the median over threads sampled twice or more, and the main thread's."""
    recording = load_recording(path)
    facts = views.summary(recording)
    if as_json:
        import json
        click.echo(json.dumps(facts, default=str, indent=2))
        return
    lines = [("file", "%s (%s)" % (facts["source"], facts["format"] if facts["imported"]
                                   else "format %s" % facts["format"]))]
    if facts["imported"]:
        lines.append(("imported", facts["imported"]))
    lines += [
             ("command", " ".join(map(str, facts["command"] or [])) or "?"),
             ("python", "%s (%s)" % (facts["python"] or "?", facts["executable"] or "?")),
             ("host", "%s, recorder %s" % (facts["host"] or "?", facts["recorder"] or "?")),
             ("start", str(facts["start"] or "?")),
             ("duration", "%.3f s" % facts["duration"]),
             ("rate", "%s requested; %s achieved in rounds (a round samples every thread once)"
              % (hertz(facts["rate_requested"]), hertz(facts["rate_rounds"]))),
             ("", "per thread while it lived: median %s (of %d threads sampled twice or more), "
                  "main thread %s" % (hertz(facts["rate_thread_median"]), facts["rate_threads"],
                                      hertz(facts["rate_main_thread"]))),
             ("samples", "%d in %d threads of %d processes; %.1f%% idle, %.1f%% holding the GIL, %d torn"
              % (facts["samples"], facts["threads"], facts["processes"], 100 * facts["idle_share"],
                 100 * facts["gil_share"], facts["torn"])),
             ("recorder", ", ".join("%s %s" % kv for kv in sorted(facts["trailer"].items()))
              or ("no statistics" if facts["imported"] else "no trailer"))]
    click.echo("".join("%-9s %s\n" % (key, printable(value)) for key, value in lines), nl=False)
    for warning in facts["warnings"]:
        click.echo("warning   " + printable(warning))
    processes = views.by_process(recording)
    if len(processes) > 1:
        rows = [(r.pid, "" if r.ppid is None else r.ppid, r.samples, r.threads, amount(r.cpu, "cpu"),
                 r.python or "", printable(r.skipped and "skipped: " + r.skipped or r.command or ""))
                for r in processes.itertuples()]
        click.echo("\n" + render(rows, ("pid", "ppid", "samples", "threads", "cpu", "python", "command"),
                                 right={0, 1, 2, 3, 4}), nl=False)
    table = views.by_thread(recording)
    several = table["pid"].nunique() > 1
    rows = [((r.pid,) if several else ()) + (r.tid, r.samples, amount(r.cpu, "cpu"),
                                            "%.0f%%" % (100 * r.idle_share), r.thread)
            for r in table.itertuples()]
    heads = (("pid",) if several else ()) + ("tid", "samples", "cpu", "idle", "thread")
    click.echo("\n" + render(rows, heads, right=set(range(len(heads) - 1))), nl=False)


@main.command()
@click.argument("path", type=RECORDING)
@filter_options(idle_default="exclude")
@click.option("--by", type=click.Choice(["function", "line", "file", "cause", "task"]),
              default="function", show_default=True,
              help="cause: what threads waited in (with --idle only, where wall time went while "
              "they waited); task: time by asyncio task and its coroutine.")
@click.option("--tasks", is_flag=True, help="The same as --by task.")
@click.option("--weight", type=click.Choice(WEIGHTS), default="samples", show_default=True, help=WEIGHT_HELP)
@click.option("--sort", type=click.Choice(["self", "total"]), default="self", show_default=True)
@click.option("-n", "--limit", type=int, default=25, show_default=True, help="Rows to show (0: all).")
@click.option("--csv", "as_csv", is_flag=True, help="Write every row as CSV instead of a table.")
@click.option("--live", is_flag=True,
              help="Follow a recording still being written (a file, or - for a pipe from "
              "spyrec -o -) and draw the table again every second, until it ends or q.")
@output_option()
def top(path, by, tasks, weight, sort, limit, as_csv, live, output, **options):
    """The heaviest functions (or lines, or files), like a profiler's top view.

    Idle samples are left out unless --idle include (as py-spy does).  A function is shown with
    the lowest line sampled in it (recordings hold the lines being run, not where a function
    starts); a frame whose instruction has no line shows no line.  The interpreter's own shim
    frames are hidden (their time is their caller's), and samples of threads with no Python
    frame at all (only C code, starting or ending) show as <no Python frames>."""
    all_native = options.pop("all_native")
    if live:
        _top_live(path, output, options, all_native, by=by, tasks=tasks, weight=weight, sort=sort,
                  limit=limit)
        return
    _top_table(filtered(load_recording(path, all_native), options), by, tasks, weight, sort, limit,
               as_csv, output)


def _top_table(recording, by, tasks, weight, sort, limit, as_csv, output):
    if by == "cause":
        _top_causes(recording, weight, limit, as_csv, output)
        return
    if tasks or by == "task":
        _top_tasks(recording, weight, limit, as_csv, output)
        return
    table = views.aggregate(recording, by, weight)
    table = table.sort_values([sort + "_share", ("total" if sort == "self" else "self") + "_share"],
                              ascending=False, kind="stable")
    if as_csv:
        table.to_csv(output, index=False)
        return
    shown = table.head(limit) if limit else table
    rows = [("%.1f%%" % (100 * r["self_share"]), "%.1f%%" % (100 * r["total_share"]),
             amount(r["self_" + weight], weight), amount(r["total_" + weight], weight), label(r, by))
            for _, r in shown.iterrows()]
    header(recording, output)
    output.write(render(rows, ("self", "total", "self " + weight, "total " + weight, by), right={0, 1, 2, 3}))


def _top_live(path, output, options, all_native, **table):
    """``top --live``: the table of what has been read so far, drawn again each second."""
    from spyanalyze.live import LiveRecording
    from spyanalyze.recording import Recording
    from spyformat.terminal import Keys, LiveScreen

    try:
        stream = spyformat.open_source(path)
    except OSError as exc:
        raise UnreadableFile("%s: %s" % (path, exc.strerror or exc))
    follow = LiveRecording(stream, global_options()["max_memory"])
    follow.start()
    screen, keys = LiveScreen(output), Keys()
    shown = None
    try:
        while True:
            data = follow.snapshot()
            if data is not None:
                shown = _live_table(Recording.from_data(data, source=path, all_native=all_native),
                                    options, table)
                screen.draw(["spyanalyze top --live: %s at %s; q or Ctrl-C quits"
                             % (printable(path), time.strftime("%H:%M:%S")), ""]
                            + shown.splitlines(), terminal_width())
            if follow.over or keys.quit(timeout=1.0):
                break
    except KeyboardInterrupt:
        pass
    finally:
        screen.close()
        keys.close()
        follow.stop()
    if follow.error is not None:
        error = follow.error
        raise error if isinstance(error, SpyError) else CorruptRecording(
            "%s: malformed recording (%s)" % (path, type(error).__name__))
    if follow.whole is not None:
        warn_lost(path, follow.whole.lost)
    if screen.terminal and shown is not None:
        output.write(shown)  # the last table stays on the user's screen


def _live_table(recording, options, table):
    if not len(recording):
        return "no samples yet\n"
    text = io.StringIO()
    try:
        _top_table(filtered(recording, dict(options)), as_csv=False, output=text, **table)
    except (SpyError, click.UsageError) as exc:
        return "%d samples so far: %s\n" % (len(recording), exc)
    return text.getvalue()


def _top_tasks(recording, weight, limit, as_csv, output):
    _share_table(recording, views.by_task(recording, weight), weight, limit, as_csv, output,
                 ("task", "coroutine"))


def _top_causes(recording, weight, limit, as_csv, output):
    _share_table(recording, views.by_cause(recording, weight), weight, limit, as_csv, output,
                 ("cause",), ("waiting in",))


def _share_table(recording, table, weight, limit, as_csv, output, columns, headings=None):
    """A view with one share per row (by cause, by task): CSV, or a table of its ``columns``."""
    if as_csv:
        table.to_csv(output, index=False)
        return
    shown = table.head(limit) if limit else table
    rows = [("%.1f%%" % (100 * r["share"]), amount(r[weight], weight))
            + tuple(printable(r[c]) if isinstance(r[c], str) else "" for c in columns)
            for _, r in shown.iterrows()]
    header(recording, output)
    output.write(render(rows, ("share", weight) + tuple(headings or columns), right={0, 1}))


def header(recording, output):
    """The line above every table: how many samples over how long, and the filters applied."""
    output.write("%d samples, %.2fs%s\n" % (len(recording), recording.duration,
                                            "; " + "; ".join(recording.steps) if recording.steps else ""))


def parse_gates(ctx, param, values):
    try:
        return [Gate(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc))


class DiffCommand(click.Command):
    """``diff BEFORE... --vs AFTER...``: ``--vs`` takes every recording that follows it, so
    it is turned into one ``--vs PATH`` per path before click parses the line."""

    def parse_args(self, ctx, args):
        spread, after_vs = [], False
        for arg in args:
            if arg == "--":
                after_vs = False
            elif arg == "--vs":
                after_vs = True
                continue
            elif after_vs and arg.startswith("-") and arg != "-":
                after_vs = False
            spread += ["--vs", arg] if after_vs else [arg]
        if args and args[-1] == "--vs":
            spread.append("--vs")               # click reports the missing value
        return super().parse_args(ctx, spread)


def expand_recordings(paths):
    """Paths as given, with a quoted glob (``'runs/before-*.spy'``) expanded in sorted order
    when no file has that very name."""
    expanded = []
    for path in paths:
        if path != "-" and glob.has_magic(path) and not os.path.exists(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise UnreadableFile("%s: no recording matches this pattern" % path)
            expanded += matches
        else:
            expanded.append(path)
    return expanded


def diff_sides(recordings, vs):
    """(before paths, after paths) from the positional recordings and ``--vs``."""
    if vs:
        if not recordings:
            raise click.UsageError("give the recordings before the change ahead of --vs")
        return expand_recordings(recordings), expand_recordings(vs)
    if len(recordings) != 2:
        raise click.UsageError("give two recordings (BEFORE AFTER), or several on each side: "
                               "BEFORE... --vs AFTER...")
    return expand_recordings(recordings[:1]), expand_recordings(recordings[1:])


def describe_side(recordings):
    samples = sum(len(r) for r in recordings)
    if len(recordings) == 1:
        return "%d samples" % samples
    return "%d recordings, %d samples" % (len(recordings), samples)


@main.command(name="diff", cls=DiffCommand)
@click.argument("recordings", nargs=-1, type=RECORDING)
@click.option("--vs", multiple=True, type=RECORDING, metavar="AFTER...",
              help="The recordings after the change (one or more, or a quoted glob); the "
                   "arguments before --vs are the recordings before it.")
@filter_options(idle_default="exclude")
@click.option("--by", type=click.Choice(["function", "line", "file"]), default="function", show_default=True)
@click.option("--weight", type=click.Choice(WEIGHTS), default="samples", show_default=True, help=WEIGHT_HELP)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="Family-wise error rate for 'significant' (Holm-adjusted).")
@click.option("--fail-if", "gates", multiple=True, callback=parse_gates, metavar="PATTERN:+N%",
              help="Exit 3 when a matching function's total share grows by more than N "
                   "percentage points and the growth is significant (repeatable).")
@click.option("-n", "--limit", type=int, default=25, show_default=True, help="Rows to show (0: all).")
@click.option("--csv", "as_csv", is_flag=True, help="Write every row as CSV instead of a table.")
@click.option("--collapsed", type=click.File("w", lazy=True), metavar="FILE",
              help="Also write a differential collapsed-stack file (stack count_before count_after).")
@click.option("--html", type=click.File("w", lazy=True), metavar="FILE",
              help="Also write a differential flame graph: the after side's graph, each frame red "
                   "where its share grew and blue where it shrank.")
@output_option()
def diff_command(recordings, vs, by, weight, alpha, gates, limit, as_csv, collapsed, html, output,
                 **options):
    """Compare recordings per function: share in each, change, and significance.

    \b
    spyanalyze diff BEFORE.spy AFTER.spy
    spyanalyze diff before-1.spy before-2.spy --vs after-1.spy after-2.spy

    Functions are matched by module-relative file and qualified name, so recordings from other
    machines or commits line up.  A change is significant when a two-sided test passes after
    Holm's correction across functions; its variance comes from time-aligned batches of the
    recordings (so start-up and other phases both runs share cancel) and, with several
    recordings a side, from how the runs differ (see spyanalyze.diff).  Exit 3 when a
    --fail-if gate fails."""
    before, after = diff_sides(recordings, vs)
    all_native = options.pop("all_native")
    a = [filtered(load_recording(path, all_native), dict(options)) for path in before]
    b = [filtered(load_recording(path, all_native), dict(options)) for path in after]
    table = diff(a, b, by=by, weight=weight, alpha=alpha)
    if collapsed:
        write_collapsed_diff(a, b, collapsed, weight=weight)
    if html:
        flamegraph.write_diff_html(a, b, html, weight=weight)
    if as_csv:
        table.to_csv(output, index=False)
    else:
        output.write("before: %s, after: %s; shares in %%, changes in points; "
                     "* = significant at alpha %g\n" % (describe_side(a), describe_side(b), alpha))
        output.write(render_diff(table.head(limit) if limit else table, by))
    failures = check_gates(table, gates)
    for gate, rows in failures:
        for r in rows.itertuples():
            click.echo("spyanalyze: gate %s failed: %s (%s) %.1f%% -> %.1f%% (p adj %.2g)"
                       % (printable(gate.text), printable(r.qualname), printable(r.module),
                          100 * r.total_a, 100 * r.total_b, r.total_p_adj),
                       err=True)
    if failures:
        click.get_current_context().exit(GATE_FAILED)


def render_diff(table, by):
    def where(r):
        if by == "file":
            return r["module"]
        return "%s (%s%s)" % (r["qualname"], r["module"], ":%d" % r["line"] if by == "line" else "")
    rows = [("%.1f%%" % (100 * r["total_a"]), "%.1f%%" % (100 * r["total_b"]),
             "%+.1f" % (100 * r["total_change"]), "%+.1f" % (100 * r["self_change"]),
             "%.2g" % r["total_p_adj"], "*" if r["total_significant"] else "", where(r))
            for _, r in table.iterrows()]
    return render(rows, ("before", "after", "total", "self", "p total", "", by), right={0, 1, 2, 3, 4})


@main.command(name="filter")
@click.argument("path", type=RECORDING)
@filter_options(idle_default="include")
@click.option("-o", "--output", type=click.File("wb", lazy=True), required=True,
              help="The new .spy file; - is standard output.")
def filter_command(path, output, **options):
    """Write a new recording holding only the samples (and stacks) the filters keep."""
    options.pop("all_native")  # a new recording keeps every frame of the old one
    recording = filtered(load_recording(path, all_native=True), options)
    if output.isatty():
        raise click.UsageError("refusing to write a binary recording to a terminal; use -o FILE")
    count = write_spy(recording, output)
    click.echo("%d samples written (%s)" % (count, "; ".join(recording.steps) or "no filter"), err=True)


@main.command()
@click.argument("path", type=RECORDING)
@click.option("-f", "--format", "fmt", type=click.Choice(sorted(FORMATS)), required=True,
              help="speedscope JSON (one profile per thread), collapsed stacks (flamegraph.pl), "
                   "or a flame graph: one self-contained HTML page (search, zoom, a graph per "
                   "thread) or an SVG; or parquet: a dataset directory (-o DIR) "
                   "partitioned by host and pid, which more recordings can be exported into.")
@click.option("--weight", type=click.Choice(WEIGHTS),
              help="Default: wall for speedscope (nanoseconds), samples for the others; "
                   "wall and cpu are written in microseconds in collapsed stacks, in "
                   "milliseconds in flame graphs.")
@click.option("--threads", "thread_roots", is_flag=True, help="collapsed: start each stack with its thread.")
@click.option("--tasks", is_flag=True,
              help="Put asyncio tasks where threads go: a profile (a graph, a root) per task.")
@filter_options(idle_default="exclude")
@output_option()
def export(path, fmt, weight, thread_roots, tasks, output, **options):
    """Export a recording as speedscope JSON, collapsed stacks, or a flame graph (HTML, SVG)."""
    recording = filtered(load_recording(path, options.pop("all_native")), options)
    if tasks:
        recording = filters.tasks_as_threads(recording)
    if fmt == "parquet":
        if output.name == "-":
            raise click.UsageError("parquet writes a dataset directory: give it with -o DIR")
        written = FORMATS[fmt](recording, output.name)
        click.echo("%d samples written to %s (%d files)" % (len(recording), output.name, len(written)),
                   err=True)
    elif fmt == "speedscope":
        FORMATS[fmt](recording, output, weight=weight or "wall")
    elif fmt == "collapsed":
        FORMATS[fmt](recording, output, weight=weight or "samples", threads=thread_roots)
    else:
        FORMATS[fmt](recording, output, weight=weight or "samples",
                     title=os.path.basename(path) if path != "-" else None)


@main.command(name="plot")
@click.argument("path", type=RECORDING)
@click.option("-o", "--output", type=click.File("wb", lazy=True), required=True,
              help="The picture: FILE.png or FILE.svg; - is standard output (with --format).")
@click.option("--format", "fmt", type=click.Choice(plot.FORMATS), help="Default: told by the -o suffix.")
@click.option("--start", metavar="TIME", help="Mark the window from TIME on (seconds since the start, "
                                               "or 200ms, 1.5s) and list its busiest functions.")
@click.option("--end", metavar="TIME", help="Mark the window up to TIME.")
@click.option("--thread", "threads", multiple=True, metavar="ID|GLOB",
              help="Show this thread: native or Python thread id, or a name glob (repeatable).")
@click.option("--bin", "bin_s", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="Width of a time bin (default: about 100 bins).")
@click.option("-n", "--limit", type=click.IntRange(1), default=10, show_default=True,
              help="Busiest functions to list.")
def plot_command(path, output, fmt, start, end, threads, bin_s, limit):
    """Draw CPU per thread and memory over time (PNG or SVG, needs matplotlib)."""
    fmt = plot.image_format(output.name, fmt)
    recording = load_recording(path)
    try:
        figure = plot.timeline(recording, start=start, end=end, threads=threads or None, bin_s=bin_s,
                               top=limit, title=os.path.basename(path) if path != "-" else None)
    except ValueError as exc:
        raise click.UsageError(str(exc))
    if output.name == "-" and fmt == "png" and sys.stdout.isatty():
        raise click.UsageError("refusing to write a PNG to a terminal; use -o FILE")
    plot.save(figure, output, fmt)


@main.command()
@click.argument("path", type=RECORDING)
@output_option()
def dump(path, output):
    """Print every record of a recording as text (for golden files and debugging)."""
    try:
        stream = spyformat.open_source(path)
    except OSError as exc:
        raise UnreadableFile("%s: %s" % (path, exc.strerror or exc))
    options = global_options()
    try:
        source = peers.HeadStream(stream, peers.HEAD_BYTES)
        kind = peers.sniff(source.head) if not source.head.startswith(spyformat.chunks.MAGIC) else None
        if kind not in (None, "collapsed"):     # any text may pass for collapsed stacks: say bad magic
            raise CorruptRecording("%s is %s, not a .spy recording: dump shows a .spy file's records "
                                   "(info, top and export read it)" % (printable(path), peers.NAMES[kind]))
        lost = spyformat.dump(source, output, max_memory=options["max_memory"])
    finally:
        if path != "-":
            stream.close()
    if lost and options["strict"]:
        raise IncompleteRecording("%s lost data: %s" % (path, "; ".join(lost)))
    warn_lost(path, lost)
