"""The soak of bench_record.py (``--soak SECONDS``): the recorder's RSS over a long recording,
and its slope extrapolated to an hour, to show that the recorder's memory stays bounded.
"""

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.common import GATED, VARIED, kill, task_cpu_ns, vm_rss_bytes
from bench.runs import stop_profiler, tail


def soak(seconds, kind, target, rate, poll, csv_path, out):
    """Record a ``kind`` target ("deep" or "varied", run by ``target``, a prepared
    ``bench.common.Target``) at ``rate`` for ``seconds``, following the recorder's RSS every
    ``poll`` seconds; write the report to ``out``."""
    script = GATED if kind == "deep" else VARIED
    args = (["--no-gate", "--seconds", str(seconds + 60)] if kind == "deep"
            else ["--seconds", str(seconds + 60)])
    ready, proc = target.start(args, script=script)
    workdir = tempfile.mkdtemp(prefix="spybench-soak-")
    rec_path = os.path.join(workdir, "soak.spy")
    err_path = os.path.join(workdir, "soak.stderr")
    with open(err_path, "wb") as err:
        prof = subprocess.Popen([sys.executable, "-m", "spyrec", "-o", rec_path, "-r", str(rate),
                                 "-d", "%ds" % seconds, "-p", str(ready["pid"])],
                                stdout=err, stderr=err, stdin=subprocess.DEVNULL)
    prof.real_pid = prof.pid        # for stop_profiler: no GNU time in between here
    start = time.monotonic()
    try:
        points = follow(prof, rec_path, poll, csv_path, start)
    finally:
        if prof.poll() is None:
            stop_profiler(prof)
        kill(proc)
    status = tail(err_path, 1)
    total = time.monotonic() - start
    with open(rec_path, "rb") as f:
        from spyformat import read_recording
        rec = read_recording(f)
    file_size = os.path.getsize(rec_path)
    shutil.rmtree(workdir, ignore_errors=True)
    points = [p for p in points if p[0] >= 1.0]                 # before exec: not spyrec yet
    # after warm-up, and before spyrec's own end (its exit frees memory)
    settled = [p for p in points if max(30.0, 0.1 * total) <= p[0] <= seconds - 1] or points
    xs = [p[0] for p in settled]
    ys = [p[1] / 1e6 for p in settled]
    slope = fitted_slope(xs, ys)
    last = ys[-1] if ys else 0
    hour = last + slope * max(0.0, 3600 - (xs[-1] if xs else 0))
    out.write("\nSoak: spyrec at %d Hz for %d s on %s (%s target, CPython %s); %s\n\n"
              % (rate, seconds, platform.node(), kind, ready["python"], status))
    write_points(points, out)
    out.write("\nRSS after warm-up: %.1f -> %.1f MB (max %.1f); slope %+.3f MB/hour over t >= %.0f s; "
              "extrapolated to one hour: %.1f MB.  %d samples, %.2f bytes/sample, %d stacks, %d frames.\n"
              % (ys[0] if ys else 0, last, max(ys) if ys else 0, slope * 3600, xs[0] if xs else 0,
                 hour, rec.sample_count, file_size / max(1, rec.sample_count), len(rec.stacks),
                 len(rec.frames["file"])))
    return {"slope_mb_per_hour": slope * 3600, "last_mb": last, "hour_mb": hour, "points": points}


def follow(prof, rec_path, poll, csv_path, start):
    """(seconds, RSS, file size, CPU ns) of the recorder every ``poll`` seconds until it exits,
    also written to ``csv_path`` as they come."""
    points = []
    csv = open(csv_path, "w") if csv_path else None
    if csv:
        csv.write("seconds,rss_bytes,file_bytes,cpu_ns\n")
    try:
        while prof.poll() is None:
            rss = vm_rss_bytes(prof.pid)
            size = os.path.getsize(rec_path) if os.path.exists(rec_path) else 0
            cpu = task_cpu_ns(prof.pid)
            if rss:
                points.append((time.monotonic() - start, rss, size, cpu))
                if csv:
                    csv.write("%.1f,%d,%d,%s\n" % points[-1])
                    csv.flush()
            end = time.monotonic() + poll
            while time.monotonic() < end and prof.poll() is None:
                time.sleep(0.2)
    finally:
        if csv:
            csv.close()
    return points


def fitted_slope(xs, ys):
    """The least-squares slope of ys over xs (0 with fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def write_points(points, out):
    """About a dozen of the points, and the last, as a table."""
    out.write("| time (s) | recorder RSS (MB) | recording (MB) |\n|---:|---:|---:|\n")
    step = max(1, len(points) // 12)
    for p in points[::step] + ([points[-1]] if points and (len(points) - 1) % step else []):
        out.write("| %.0f | %.1f | %.1f |\n" % (p[0], p[1] / 1e6, p[2] / 1e6))
