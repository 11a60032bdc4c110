"""The recorder benchmark's report: medians over repeats, the comparison tables, the baseline
noise and spyrec against the issue's targets; and the runs saved with ``--json`` read back.
"""

import json
import statistics

from bench.common import median_of
from bench.runs import Run


def rate_label(rate):
    return {"100": "100 Hz", "1000": "1 kHz", "10000": "10 kHz", "max": "max"}.get(str(rate), str(rate))


def brief(run):
    if run.error:
        return run.error
    parts = ["%.0f/s/thread" % run.rate_per_thread if run.rate_per_thread is not None else "-",
             "slowdown %+.1f%%" % (100 * run.slowdown) if run.slowdown is not None else "",
             "cpu %.2f" % run.cpu_cores if run.cpu_cores is not None else "",
             "%.1f MB" % (run.peak_rss / 1e6) if run.peak_rss else "",
             "%.1f B/sample" % (run.bytes / run.samples) if run.samples else ""]
    return ", ".join(p for p in parts if p)



def summarise(runs):
    """(target, threads, rate, profiler) -> medians, or the failure when every run failed."""
    groups = {}
    for run in runs:
        key = (run.extra.get("target"), run.threads, str(run.rate), run.profiler)
        groups.setdefault(key, []).append(run)
    summary = {}
    for key, group in groups.items():
        ok = [r for r in group if not r.error]
        if not ok:
            summary[key] = {"error": group[0].error, "runs": len(group)}
            continue
        share_err = [100 * (r.measured_share - r.truth_share) for r in ok
                     if r.measured_share is not None and r.truth_share is not None]
        summary[key] = {
            "runs": len(group), "failed": len(group) - len(ok),
            "rate": median_of([r.rate_per_thread for r in ok]),
            "slowdown": median_of([r.slowdown for r in ok]),
            "slowdown_range": (min(r.slowdown for r in ok if r.slowdown is not None),
                               max(r.slowdown for r in ok if r.slowdown is not None))
            if any(r.slowdown is not None for r in ok) else None,
            "cpu_slowdown": median_of([r.cpu_slowdown for r in ok]),
            "cpu": median_of([r.cpu_cores for r in ok]),
            "rss": max([r.peak_rss for r in ok if r.peak_rss] or [0]) or None,
            "bps": median_of([r.bytes / r.samples for r in ok if r.samples]),
            "share_err": median_of(share_err),
            "truth": median_of([r.truth_share for r in ok]),
            "depth": max([r.max_depth or 0 for r in ok]),
            "errors": [r.error for r in group if r.error],
        }
    return summary


def fmt(value, pattern, missing="-"):
    return missing if value is None else pattern % value


def print_tables(summary, skipped, out):
    targets = sorted({(k[0], k[1]) for k in summary}, key=lambda t: (t[0], t[1]))
    for label, threads in targets:
        out.write("\n**%s, %s** (30-deep CPU-bound target, %d worker thread%s)\n\n"
                  % (label, "single thread" if threads == 1 else "%d threads" % threads, threads,
                     "" if threads == 1 else "s"))
        out.write("| rate asked | profiler | samples/s/thread | target slowdown (wall) "
                  "| target CPU time | profiler CPU (cores) | peak RSS (MB) | bytes/sample "
                  "| heavy share error (pp) |\n")
        out.write("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
        keys = [k for k in summary if (k[0], k[1]) == (label, threads)]
        order = {"100": 0, "1000": 1, "10000": 2, "max": 3}
        names = ["spyrec", "austin", "py-spy", "py-spy --nonblocking", "profiling.sampling"]
        keys.sort(key=lambda k: (order.get(k[2], 9), names.index(k[3]) if k[3] in names else 9))
        for key in keys:
            s = summary[key]
            if "error" in s:
                out.write("| %s | %s | %s | | | | | | |\n" % (rate_label(key[2]), key[3], s["error"]))
                continue
            note = " (%d of %d runs failed)" % (s["failed"], s["runs"]) if s["failed"] else ""
            out.write("| %s | %s%s | %s | %s | %s | %s | %s | %s | %s |\n" % (
                rate_label(key[2]), key[3], note, fmt(s["rate"], "%.0f"),
                fmt(s["slowdown"] and 100 * s["slowdown"], "%+.1f%%") if s["slowdown"] is not None else "-",
                fmt(s["cpu_slowdown"] and 100 * s["cpu_slowdown"], "%+.1f%%")
                if s["cpu_slowdown"] is not None else "-",
                fmt(s["cpu"], "%.2f"), fmt(s["rss"] and s["rss"] / 1e6, "%.0f"),
                fmt(s["bps"], "%.1f"), fmt(s["share_err"], "%+.1f")))
    for item in skipped:
        out.write("\n%s on %s: %s" % (item["profiler"], item["target"], item["reason"]))
    if skipped:
        out.write("\n")


def check_issue_targets(summary, out):
    """spyrec against the issue's recorder targets, from this run's medians."""
    rows = []
    for (label, threads, rate, name), s in sorted(summary.items()):
        if name != "spyrec" or "error" in s:
            continue
        who = "%s, %d thread%s" % (label, threads, "" if threads == 1 else "s")
        if rate == "10000":
            rows.append((who, "10 kHz: >= 5,000 samples/s/thread",
                         s["rate"] is not None and s["rate"] >= 5000,
                         fmt(s["rate"], "%.0f/s")))
            rows.append((who, "10 kHz: slowdown <= 5%", s["slowdown"] is not None and s["slowdown"] <= 0.05,
                         fmt(s["slowdown"] and 100 * s["slowdown"], "%+.1f%%")))
        if rate == "1000":
            rows.append((who, "1 kHz: the full 1,000 samples/s/thread (>= 990)",
                         s["rate"] is not None and s["rate"] >= 990, fmt(s["rate"], "%.0f/s")))
            rows.append((who, "1 kHz: slowdown <= 1%", s["slowdown"] is not None and s["slowdown"] <= 0.01,
                         fmt(s["slowdown"] and 100 * s["slowdown"], "%+.1f%%")))
            rows.append((who, "1 kHz: recorder CPU <= 0.2 core", s["cpu"] is not None and s["cpu"] <= 0.2,
                         fmt(s["cpu"], "%.2f cores")))
            if threads == 1:
                rows.append((who, "<= 10 bytes/sample (30-deep target)",
                             s["bps"] is not None and s["bps"] <= 10,
                             fmt(s["bps"], "%.1f B")))
    if not rows:
        return
    cpu_note = {}
    for (label, threads, rate, name), s in summary.items():
        if name == "spyrec" and "error" not in s and s.get("cpu_slowdown") is not None:
            cpu_note[("%s, %d thread%s" % (label, threads, "" if threads == 1 else "s"), rate)] = \
                " (CPU time %+.1f%%)" % (100 * s["cpu_slowdown"])
    rows = [(who, what, ok, value + (cpu_note.get((who, "10000" if what.startswith("10") else "1000"), "")
                                     if "slowdown" in what else ""))
            for who, what, ok, value in rows]
    out.write("\n| spyrec target | on | measured | met? |\n|---|---|---:|---|\n")
    for who, what, ok, value in rows:
        out.write("| %s | %s | %s | %s |\n" % (what, who, value, "yes" if ok else "**no**"))
    out.write("\nA slowdown verdict is no finer than the baseline noise printed above.\n")


def print_report(results, out):
    """The comparison tables, the baseline noise and the issue-target check."""
    summary = summarise(results["runs"])
    print_tables(summary, results["skipped"], out)
    baselines = {}
    for b in results["baselines"]:
        if b["elapsed"]:
            baselines.setdefault((b["target"], b["threads"]), []).append(b["elapsed"])
    out.write("\nBaseline noise (same fixed work, no profiler): %s.\n" % "; ".join(
        "%s %d thr: median %.2f s, min..max %+.1f%%..%+.1f%%"
        % (t, n, statistics.median(v), 100 * (min(v) / statistics.median(v) - 1),
           100 * (max(v) / statistics.median(v) - 1))
        for (t, n), v in sorted(baselines.items())))
    check_issue_targets(summary, out)


def load_results(path):
    """Runs saved with --json, back as Run objects (to print the report again)."""
    with open(path) as f:
        data = json.load(f)
    runs = []
    for d in data["runs"]:
        run = Run(None, d["rate"], d["threads"])
        for key, value in d.items():
            if key in run.__dict__:
                setattr(run, key, value)
        runs.append(run)
    return {"runs": runs, "baselines": data.get("baselines", []), "skipped": data.get("skipped", []),
            "breakdown": data.get("breakdown")}

