"""A recording as a notebook shows it (``Recording._repr_html_``): what was recorded, how well,
its threads and its heaviest functions, in a few small tables.  Every text from the file is
escaped: a recording is untrusted input, and a name may hold markup."""

import html
from typing import Any, Iterable, List, Optional, Sequence

from spyanalyze import views
from spyanalyze.frames import label

#: Rows of each table: a summary, not the whole recording.
ROWS = 10


def recording_html(recording: Any) -> str:
    """The HTML summary of a Recording."""
    facts = views.summary(recording)
    rate = facts.get("rate_rounds")
    described = [
        ("command", " ".join(map(str, facts["command"])) if facts["command"] else None),
        ("Python", facts["python"]),
        ("host", facts["host"]),
        ("started", facts["start"]),
        ("duration", "%.2f s" % facts["duration"]),
        ("samples", "{:,} in {:,} threads, {:,} processes".format(
            facts["samples"], facts["threads"], facts["processes"])),
        ("rate", "%.0f Hz asked, %.0f Hz achieved" % (facts["rate_requested"], rate)
         if facts["rate_requested"] and rate else None),
        ("idle", "%.0f%% of samples" % (100 * facts["idle_share"])),
        ("filters", "; ".join(facts["filters"]) or None),
    ]
    parts = ["<div class=\"spyanalyze-recording\">",
             "<strong>%s</strong>" % _text(facts["source"] or "recording (in memory)")]
    parts += ["<p style=\"color:#b00\">%s</p>" % _text(warning)
              for warning in list(facts["lost"]) + list(facts["warnings"])]
    parts.append(_table(None, None, [(name, value) for name, value in described
                                     if value is not None]))
    threads = views.by_thread(recording).head(ROWS)
    parts.append(_table("threads", ("thread", "tid", "samples", "CPU s", "CPU use", "idle"), [
        (row.thread, row.tid, row.samples, "%.2f" % (row.cpu / 1e9),
         "" if row.cpu_use != row.cpu_use else "%.0f%%" % (100 * row.cpu_use),
         "%.0f%%" % (100 * row.idle_share)) for row in threads.itertuples()]))
    functions = views.by_function(recording).head(ROWS)
    parts.append(_table("heaviest functions (share of samples)", ("self", "total", "function"), [
        ("%.1f%%" % (100 * row.self_share), "%.1f%%" % (100 * row.total_share),
         label(row.qualname, row.module, row.line)) for row in functions.itertuples()]))
    parts.append("</div>")
    return "\n".join(parts)


def _table(caption: Optional[str], headers: Optional[Sequence[str]],
           rows: Iterable[Sequence[Any]]) -> str:
    out: List[str] = ["<table>"]
    if caption:
        out.append("<caption>%s</caption>" % _text(caption))
    if headers:
        out.append("<tr>%s</tr>" % "".join("<th>%s</th>" % _text(h) for h in headers))
    for row in rows:
        out.append("<tr>%s</tr>" % "".join("<td>%s</td>" % _text(cell) for cell in row))
    out.append("</table>")
    return "".join(out)


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)
