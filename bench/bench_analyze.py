"""Benchmark spyanalyze: load rate, views, diff and export times, and peak memory.

    .venv/bin/python -m bench.bench_analyze                      # 1M and 10M samples
    .venv/bin/python -m bench.bench_analyze --sizes 1000000      # only 1M
    .venv/bin/python -m bench.bench_analyze --dir /tmp/spybench  # keep / reuse the generated files

Recordings are synthetic but shaped like real ones: 8 threads sampled every tick at 1 kHz,
about 3,000 distinct stacks 8-40 frames deep over 400 functions in 60 files (user code, stdlib
and site-packages paths), and stacks that persist from one sample to the next (a Markov chain
that keeps its stack 90% of the time), so they compress and autocorrelate as real ones do.
The second recording of each size ("b") shifts the weight of a few functions, for the diff.

Each measurement runs in a fresh interpreter so its peak RSS (VmHWM) is its own; times
exclude interpreter start and imports; each is the fastest of ``--repeat`` runs (3).  Results
go to stdout as a Markdown table for docs/benchmarks.md.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

THREADS = 8
INTERVAL_NS = 1_000_000


def make_program(seed):
    """A call graph: (file, qualname, line) frames, and ~3,000 stacks over them."""
    rng = np.random.default_rng(seed)
    files = (["/srv/app/src/service/mod%02d.py" % i for i in range(30)]
             + ["/usr/lib/python3.11/%s.py" % n for n in ("json/decoder", "threading", "socket", "selectors",
                                                          "asyncio/events", "logging/__init__", "re/_parser",
                                                          "collections/__init__", "functools", "ssl")]
             + ["/srv/app/.venv/lib/python3.11/site-packages/%s.py" % n
                for n in ["numpy/core/numeric", "pandas/core/frame", "requests/sessions", "urllib3/pool",
                          "sqlalchemy/orm/query", "pydantic/main", "jinja2/runtime", "redis/client",
                          "attr/_make", "click/core", "yaml/loader", "idna/core", "certifi/core",
                          "six", "chardet/universal", "anyio/_core", "h11/_state", "orjson/api",
                          "msgpack/fallback", "zmq/sugar"]])
    functions = []
    for i in range(400):
        file = files[i % len(files)]
        cls = "Class%d." % (i % 7) if i % 3 == 0 else ""
        functions.append((file, "%sfunc_%d" % (cls, i), 10 + (i * 37) % 900))
    stacks = set()
    roots = [("/srv/app/src/main.py", "<module>", 1),
             ("/usr/lib/python3.11/threading.py", "Thread._bootstrap", 995)]
    while len(stacks) < 3000:
        depth = int(rng.integers(8, 41))
        chosen = rng.integers(0, len(functions), depth - 1)
        stack = (roots[len(stacks) % 2],) + tuple(functions[j] for j in chosen)
        stacks.add(stack)
    return sorted(stacks)


def generate(path, samples, variant, seed=1):
    """Write a recording of ``samples`` samples (``variant`` 'a' or 'b') with SpyWriter."""
    from spyformat import Interner, SampleFlag, SpyWriter

    stacks = make_program(seed)
    rng = np.random.default_rng(seed + (variant == "b"))
    weights = rng.pareto(1.2, len(stacks)) + 0.05
    if variant == "b":                       # a regression: a few stacks get much heavier
        weights[:40] *= 4
    weights /= weights.sum()
    ticks = samples // THREADS
    n = ticks * THREADS
    fresh = rng.choice(len(stacks), size=n, p=weights)
    keep = rng.random(n) < 0.9
    chosen = fresh.reshape(ticks, THREADS)
    keep = keep.reshape(ticks, THREADS)
    for i in range(1, ticks):                # the Markov chain, vectorised over threads
        chosen[i] = np.where(keep[i], chosen[i - 1], chosen[i])
    chosen = chosen.ravel()
    idle = rng.random(n) < 0.2
    t = (np.repeat(np.arange(ticks, dtype=np.int64) * INTERVAL_NS, THREADS)
         + np.tile(np.arange(THREADS, dtype=np.int64) * 2000, ticks))
    tids = np.tile(np.arange(1000, 1000 + THREADS), ticks)
    cpu = np.where(idle, 0, rng.integers(200_000, INTERVAL_NS, n))
    rss = 200_000_000 + np.cumsum(rng.integers(-4096, 4097, n))
    flags = np.where(idle, SampleFlag.IDLE, 0) | np.where(rng.random(n) < 0.3, SampleFlag.GIL, 0)
    with open(path, "wb") as stream:
        writer = SpyWriter(stream)
        writer.write_header({"interval_ns": INTERVAL_NS, "pid": 4000, "argv": ["python", "bench.py"],
                             "python_version": "3.11.7", "python_executable": "/usr/bin/python3.11",
                             "host": "bench", "recorder": "bench_analyze",
                             "start_wall_ns": 1_700_000_000 * 10 ** 9,
                             "start_mono_ns": 0})
        writer.process(pid=4000, argv=["python", "bench.py"], python_version="3.11.7")
        for k in range(THREADS):
            writer.thread(pid=4000, tid=1000 + k, py_thread_id=k + 1,
                          name="MainThread" if k == 0 else "worker-%d" % k, start_ns=0, end_ns=None)
        interned = Interner(writer)
        ids = [interned.stack_id(tuple(interned.frame_id(f, q.rsplit(".", 1)[-1], q, line)
                                     for f, q, line in stack)) for stack in stacks]
        stack_ids = np.asarray(ids)[chosen]
        sample = writer.sample
        for row in zip(t.tolist(), [4000] * n, tids.tolist(), stack_ids.tolist(), cpu.tolist(), rss.tolist(),
                       flags.tolist()):
            sample(*row)
        writer.close({"samples": n, "errors": 0, "late": 0, "duration_ns": ticks * INTERVAL_NS})


# ------------------------------------------------------------------------------------------
# Stages, each run in its own interpreter


def stage(name, files):
    import io

    import spyanalyze
    from spyanalyze.diff import diff
    from spyanalyze.export import collapsed, speedscope

    result = {}
    started = time.perf_counter()
    rec = spyanalyze.load(files[0])
    result["load"] = time.perf_counter() - started
    result["samples"] = len(rec)
    if name == "views":
        started = time.perf_counter()
        rec.by_function()
        result["by_function"] = time.perf_counter() - started
        started = time.perf_counter()
        rec.by_line()
        rec.by_thread()
        rec.timeline("100ms")
        result["other_views"] = time.perf_counter() - started
    elif name == "diff":
        started = time.perf_counter()
        other = spyanalyze.load(files[1])
        result["load_b"] = time.perf_counter() - started
        started = time.perf_counter()
        diff(rec, other)
        result["diff"] = time.perf_counter() - started
    elif name == "speedscope":
        started = time.perf_counter()
        with open(os.devnull, "w") as out:
            speedscope.write(rec, out)
        result["export"] = time.perf_counter() - started
    elif name == "collapsed":
        started = time.perf_counter()
        collapsed.write(rec, io.StringIO())
        result["export"] = time.perf_counter() - started
    elif name == "filter":
        started = time.perf_counter()
        kept = rec.filter(threads="MainThread", idle="exclude")
        with open(os.devnull, "wb") as out:
            spyanalyze.write(kept, out)
        result["filter_write"] = time.perf_counter() - started
        result["kept"] = len(kept)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def peak_rss_mb():
    """This process's peak RSS.  VmHWM, not ru_maxrss: the latter survives exec, so a stage
    would inherit the generator's peak from the parent it was forked from."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_stage(name, files, repeat=1):
    """Run a stage ``repeat`` times, each in a fresh interpreter; keep the fastest time of each
    measurement (the least disturbed by other work on the machine) and the largest peak RSS."""
    best = {}
    for _ in range(repeat):
        output = subprocess.run([sys.executable, "-m", "bench.bench_analyze", "--stage", name, *files],
                                check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        for key, value in result.items():
            if key not in best:
                best[key] = value
            elif key == "peak_rss_mb":
                best[key] = max(best[key], value)
            elif isinstance(value, float):
                best[key] = min(best[key], value)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--dir", default="/tmp/spyanalyze-bench")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (fastest kept)")
    parser.add_argument("--stage")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    if args.stage:
        return stage(args.stage, args.files)
    os.makedirs(args.dir, exist_ok=True)
    rows = []
    for size in args.sizes:
        files = []
        for variant in "ab":
            path = os.path.join(args.dir, "bench-%d-%s.spy" % (size, variant))
            if not os.path.exists(path):
                started = time.perf_counter()
                generate(path + ".tmp", size, variant)
                os.replace(path + ".tmp", path)
                print("generated %s in %.1fs" % (path, time.perf_counter() - started), file=sys.stderr)
            files.append(path)
        size_mb = os.path.getsize(files[0]) / 1e6
        views = run_stage("views", files[:1], args.repeat)
        diffed = run_stage("diff", files, args.repeat)
        scope = run_stage("speedscope", files[:1], args.repeat)
        folded = run_stage("collapsed", files[:1], args.repeat)
        filtered = run_stage("filter", files[:1], args.repeat)
        rows.append((size, size_mb, views, diffed, scope, folded, filtered))
        print(json.dumps({"size": size, "views": views, "diff": diffed, "speedscope": scope,
                          "collapsed": folded, "filter": filtered}), file=sys.stderr)
    print("Machine: %d CPUs, load average %.1f at the end; Python %s; numpy %s; pandas %s.\n"
          % (os.cpu_count(), os.getloadavg()[0], sys.version.split()[0], np.__version__,
             __import__("pandas").__version__))
    print("| samples | file | load | load rate | by_function | line+thread+timeline | diff (2 loaded) "
          "| load 2 + diff | speedscope | collapsed | filter+write | peak RSS (load+views / diff) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, size_mb, views, diffed, scope, folded, filtered in rows:
        print("| %s | %.0f MB | %.2f s | %.2f M/s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s "
              "| %.2f s | %.0f / %.0f MB |"
              % ("{:,}".format(views["samples"]), size_mb, views["load"],
                 views["samples"] / views["load"] / 1e6,
                 views["by_function"], views["other_views"], diffed["diff"],
                 diffed["load"] + diffed["load_b"] + diffed["diff"], scope["export"], folded["export"],
                 filtered["filter_write"], views["peak_rss_mb"], diffed["peak_rss_mb"]))


if __name__ == "__main__":
    main()
