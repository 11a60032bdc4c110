"""A recording's summary as HTML, for Jupyter (``Recording._repr_html_``).

Everything in it comes from the file, which is untrusted: every string is HTML-escaped, so a
thread or function named ``<script>`` shows as text and runs nothing.
"""

from html import escape
from typing import Any, Iterable, List, Sequence

from spyanalyze import views

#: A ``spyanalyze.recording.Recording``, whose methods import this module: importing it here
#: would close an import cycle (tests/test_imports.py).
Recording = Any

TOP_FUNCTIONS = 5
MAX_THREADS = 20


def to_html(recording: Recording) -> str:
    """A compact summary: provenance, span, threads (samples, CPU), top functions, warnings."""
    facts = views.summary(recording)
    command = facts["command"]
    if isinstance(command, (list, tuple)):
        command = " ".join(str(part) for part in command)
    rows = [("source", facts["source"] or "(in memory)"), ("command", command),
            ("Python", facts["python"]), ("start", facts["start"]),
            ("duration", "%.2f s" % facts["duration"]),
            ("samples", "{:,}".format(facts["samples"])),
            ("threads", facts["threads"]), ("processes", facts["processes"])]
    if facts["filters"]:
        rows.append(("filters", "; ".join(facts["filters"])))
    parts = ["<div class=\"spyanalyze-recording\">",
             "<strong>Recording</strong>",
             _table(["", ""], [(name, value) for name, value in rows if value not in (None, "")])]
    warnings = list(facts["lost"]) + list(facts["warnings"])
    if warnings:
        parts.append("<ul style=\"color:#a00\">%s</ul>" % "".join("<li>%s</li>" % _text(w) for w in warnings))
    if facts["samples"]:
        by_thread = recording.by_thread().head(MAX_THREADS)
        parts.append("<strong>Threads</strong>")
        parts.append(_table(["thread", "tid", "samples", "CPU s", "CPU use"], [
            (row.thread, row.tid, row.samples, "%.2f" % (row.cpu / 1e9),
             "" if row.cpu_use != row.cpu_use else "%.0f%%" % (100 * row.cpu_use))
            for row in by_thread.itertuples()]))
        functions = recording.filter(idle="exclude")
        if not functions.empty:
            top = functions.by_function().head(TOP_FUNCTIONS)
            parts.append("<strong>Top functions</strong> (self samples, threads not idle)")
            parts.append(_table(["function", "module", "samples", "share"], [
                (row.qualname, row.module, row.self_samples, "%.1f%%" % (100 * row.self_share))
                for row in top.itertuples()]))
    parts.append("</div>")
    return "\n".join(parts)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join("<th style=\"text-align:left\">%s</th>" % _text(h) for h in headers)
    body: List[str] = ["<tr>%s</tr>" % "".join("<td style=\"text-align:left\">%s</td>" % _text(cell)
                                                for cell in row) for row in rows]
    return "<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (head, "".join(body))


def _text(value: Any) -> str:
    return escape(str(value))
