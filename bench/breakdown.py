"""The cost of one spyrec sampling round, by component (memory reads, frame decoding, /proc
metrics, interning, writing and flushing), measured in this process against a live gated
target: bench_record.py's cost breakdown.
"""

import os
import time

from bench.common import Target


def timed(function, iterations, batch=50):
    """Seconds per call of ``function()``: the fastest batch of ``batch`` calls, over about
    ``iterations`` calls.  On a 2-core machine shared with a busy target, the slowest batches
    measure preemption, not the code; the fastest is the cost when the recorder has a core."""
    best = float("inf")
    batch = max(1, min(batch, iterations))
    for _ in range(max(3, iterations // batch)):
        start = time.perf_counter()
        for _ in range(batch):
            function()
        best = min(best, (time.perf_counter() - start) / batch)
    return best


class RecordingReads:
    """Wraps the walker's readers to list the reads one ``sample_threads()`` makes: each as
    (reader, its arguments, bytes asked for); a batched read (``read_many``, one system call
    for several ranges) is one of them."""

    def __init__(self, walker):
        self.walker = walker
        self.calls = []
        self._read = walker.read
        self._mem = walker.mem

    def __enter__(self):
        calls, small, mem = self.calls, self._read, self._mem

        def read_small(addr, size):
            calls.append((small, (addr, size), size))
            return small(addr, size)

        class Mem:
            def read(self_, addr, size):
                calls.append((mem.read, (addr, size), size))
                return mem.read(addr, size)

            def read_many(self_, ranges):
                calls.append((mem.read_many, (list(ranges),), sum(size for _, size in ranges)))
                return mem.read_many(ranges)

            def __getattr__(self_, name):
                return getattr(mem, name)

        self.walker.read = read_small
        self.walker.mem = Mem()
        return self

    def __exit__(self, *exc):
        self.walker.read = self._read
        self.walker.mem = self._mem


def breakdown_one(python, threads, iterations):
    """Per-component cost of sampling a live gated target; returns a dict of seconds per
    round (``python``: an interpreter path or a ``Target``)."""
    from spyrec.interpreter import PythonProcess

    target = python if isinstance(python, Target) else Target(python)
    ready, proc = target.start(["--no-gate", "--seconds", "600", "--threads", str(threads)])
    pid = ready["pid"]
    try:
        time.sleep(0.5)
        process = PythonProcess.attach(pid)
        for _ in range(200):
            process.sample_threads()
        stacks = process.sample_threads()
        r = {"python": ready["python"], "threads": threads, "stacks": len(stacks),
             "depth": max(len(s.frames) for s in stacks)}
        time_walks(process, iterations, r)
        time_proc_metrics(pid, stacks, iterations, r)
        with open(os.devnull, "wb") as sink:
            time_interning_and_writing(process, pid, stacks, sink, iterations, r)
            time_whole_rounds(process, sink, iterations, r)
        process.close()
        return r
    finally:
        proc.kill()
        proc.wait()


def walk_all(process):
    """One round in which every thread is walked, as after a change of GIL holder (no stack
    kept whole)."""
    process.walker._gil_seen = {}
    process.sample_threads()


def time_walks(process, iterations, r):
    """``sample_threads()`` as it runs, with every thread walked, with the code cache
    revalidated, and its memory reads alone."""
    from spyrec import codeobjects

    # Back to back, the GIL rarely changes hands between two rounds: every thread but its
    # holder keeps its stack (StackWalker.sample).  After a change, every thread is walked.
    r["sample_threads"] = timed(process.sample_threads, iterations)
    r["walk_all"] = timed(lambda: walk_all(process), iterations)
    # The code cache forgets what it verified every REVALIDATE_SECONDS; the round after
    # that re-reads every code object on the stacks.  Timed on its own (the fastest-batch
    # timing above all but skips it), then amortised over the rounds of one period.
    period = getattr(codeobjects, "REVALIDATE_SECONDS", None)

    def revalidating():
        process.codes._expires = 0
        walk_all(process)
    if period and hasattr(process.codes, "_expires"):
        r["revalidate_extra"] = max(0.0, timed(revalidating, iterations // 4) - r["walk_all"])
        r["revalidate_period"] = period
        r["revalidate"] = r["revalidate_extra"] * min(1.0, 1.0 / (1000 * period))
    else:
        r["revalidate_extra"] = r["revalidate"] = 0.0
        r["revalidate_period"] = None
    # The reads of a round that walks every thread, replayed without any parsing.
    calls = []
    for _ in range(20):                 # a typical round (not a code-cache revalidation one)
        with RecordingReads(process.walker) as rec:
            walk_all(process)
        if not calls or len(rec.calls) < len(calls):
            calls = rec.calls

    def replay():
        for fn, args, _ in calls:
            fn(*args)
    r["reads"] = timed(replay, iterations)
    r["read_count"] = len(calls)
    r["read_bytes"] = sum(size for _, _, size in calls)
    r["decode"] = max(0.0, r["walk_all"] - r["reads"])


def time_proc_metrics(pid, stacks, iterations, r):
    """/proc metrics, per thread and per round."""
    from spyrec.procstats import ProcessStats, ThreadStats

    tstats = [ThreadStats("/proc", pid, s.native_tid) for s in stacks]
    pstats = ProcessStats("/proc", pid)
    r["refresh"] = timed(lambda: [t.refresh() for t in tstats], iterations)
    r["rss"] = timed(pstats.rss_bytes, iterations)
    for t in tstats:
        t.close()
    pstats.close()


def time_interning_and_writing(process, pid, stacks, sink, iterations, r):
    """Interning (a cached stack, a new stack of known frames, a new stack of new frames), then
    appending samples and flushing them."""
    from spyformat import SpyWriter
    from spyrec.resolver import StackResolver

    writer = SpyWriter(sink)
    resolver = StackResolver(process.codes, writer)
    busy = [s for s in stacks if len(s.frames) >= 25]
    raw = (busy or stacks)[0].frames
    resolver.stack_id(raw)
    r["intern_cached"] = timed(lambda: [resolver.stack_id(s.frames) for s in stacks], iterations)

    interned = resolver.interned

    def new_stack():
        resolver._raw_stacks.clear()
        interned._stacks.clear()
        resolver.stack_id(raw)

    def clear_only():
        resolver._raw_stacks.clear()
        interned._stacks.clear()

    def new_frames():
        resolver._raw_stacks.clear()
        resolver._raw_frames.clear()
        interned._stacks.clear()
        interned._frames.clear()
        interned._strings.clear()
        resolver.stack_id(raw)

    overhead = timed(clear_only, iterations)
    r["intern_new_stack"] = max(0.0, timed(new_stack, iterations // 4) - overhead)
    r["intern_new_frames"] = max(0.0, timed(new_frames, iterations // 10) - overhead)
    time_writing(writer, resolver.stack_id(raw), pid, len(stacks), iterations, r)


def time_writing(writer, sid, pid, n, iterations, r):
    """Appending one sample per thread; a flush (encode + compress + write) amortised over one
    second of samples at 1 kHz."""
    now = time.monotonic_ns()
    r["writer_sample"] = timed(lambda: [writer.sample(now, pid, 1234, sid, 1000, 50_000_000, 2)
                                        for _ in range(n)], iterations)
    writer.flush()
    per_flush = 1000 * n
    flush_times = []
    for k in range(5):
        for i in range(per_flush):
            writer.sample(now + i * 1_000_000, pid, 1000 + i % n, sid + (i % 7 == 0), 900_000 + i % 97,
                          50_000_000 + 4096 * (i % 3), 2)
        start = time.perf_counter()
        writer.flush()
        flush_times.append(time.perf_counter() - start)
    r["flush_per_sample"] = min(flush_times) / per_flush
    r["flush"] = r["flush_per_sample"] * n


def time_whole_rounds(process, sink, iterations, r):
    """The whole round as the Sampler does it (metrics, interning, writer included)."""
    from spyformat import SpyWriter
    from spyrec.sampler import Sampler
    from spyrec.sinks import NullSink

    sampler = Sampler(process, SpyWriter(sink), 1_000_000, time.monotonic_ns())
    sampler.sample_round(time.monotonic_ns())
    r["round"] = timed(lambda: sampler.sample_round(time.monotonic_ns()), iterations)

    def round_all():
        process.walker._gil_seen = {}
        for thread in sampler._threads.values():
            thread.stats.running = True  # no thread found asleep last round: none still
        sampler.sample_round(time.monotonic_ns())
    r["round_all"] = timed(round_all, iterations)
    sampler.finish()
    bare = Sampler(process, NullSink(), 1_000_000, time.monotonic_ns())
    bare.sample_round(time.monotonic_ns())
    r["round_null"] = timed(lambda: bare.sample_round(time.monotonic_ns()), iterations)
    bare.finish()


BREAKDOWN_ROWS = [
    ("sample_threads(), GIL holder unchanged", "sample_threads",
     "reads + frame decoding, one round; only the GIL holder walked, the others keep their stacks"),
    ("sample_threads(), every thread walked", "walk_all", "the same after a change of GIL holder"),
    ("  of which memory reads", "reads", "its reads replayed, no parsing"),
    ("  of which decoding", "decode", "the difference"),
    ("code-cache revalidation", "revalidate", "re-reading code objects once per period, amortised at 1 kHz"),
    ("/proc refresh", "refresh",
     "schedstat, and stat (state and CPU) for a thread running at the last read, wchan first "
     "for one asleep; preads and parsing, every thread"),
    ("/proc rss_bytes", "rss", "statm, once per round"),
    ("stack interning (cached)", "intern_cached", "every thread's stack, dict hit"),
    ("SpyWriter.sample", "writer_sample", "append to columns, every thread"),
    ("flush (encode+compress+write)", "flush", "amortised over 1 s at 1 kHz"),
]


def per_round(results, seconds):
    """A table row's cells: ``seconds(r)`` of a round in µs, and per thread sampled."""
    cells = []
    for r in results:
        us = seconds(r) * 1e6
        cells.append("%.1f (%.1f/sample)" % (us, us / r["stacks"]))
    return " | ".join(cells)


def measured_round(r):
    """A measured round at 1 kHz, GIL holder unchanged: the round, its flush, revalidation."""
    return r["round"] + r["flush"] + r["revalidate"]


def print_breakdown(results, out):
    out.write("\nCost of one sampling round (µs; per sample = per round / threads sampled)\n\n")
    heads = ["%s, %d thr (%d stacks)" % (r["python"], r["threads"], r["stacks"]) for r in results]
    out.write("| component | " + " | ".join(heads) + " | what |\n")
    out.write("|---|" + "---:|" * len(results) + "---|\n")
    for label, key, what in BREAKDOWN_ROWS:
        out.write("| %s | %s | %s |\n" % (label, per_round(results, lambda r: r[key]), what))
    summed = [k for _, k, _ in BREAKDOWN_ROWS if k not in ("walk_all", "reads", "decode")]
    out.write("| **sum of the above** | %s | |\n"
              % per_round(results, lambda r: sum(r[k] for k in summed)))
    out.write("| **Sampler.sample_round + flush + revalidation, measured** | %s | the real hot path "
              "at 1 kHz, GIL holder unchanged |\n" % per_round(results, measured_round))
    out.write("| **the same, every thread walked** | %s | a round after a change of GIL holder |\n"
              % per_round(results, lambda r: r["round_all"] + r["flush"] + r["revalidate"]))
    out.write("| Sampler.sample_round into a null sink | %s | the loop alone: what a round costs "
              "before anything is written |\n" % per_round(results, lambda r: r["round_null"]))
    cells = ["%d reads, %.1f KB" % (r["read_count"], r["read_bytes"] / 1e3) for r in results]
    out.write("| reads per round | %s | |\n" % " | ".join(cells))
    cells = ["%.1f / %.1f" % (r["intern_new_stack"] * 1e6, r["intern_new_frames"] * 1e6) for r in results]
    out.write("| a stack not seen before: known frames / new frames (µs per new stack; code objects "
              "re-verified, frames described, interned) | %s | |\n" % " | ".join(cells))
    cells = []
    for r in results:
        period = "%.0f ms" % (1e3 * r["revalidate_period"]) if r["revalidate_period"] else "-"
        cells.append("%.1f µs every %s" % (r["revalidate_extra"] * 1e6, period))
    out.write("| code-cache revalidation, per event | %s | |\n" % " | ".join(cells))
    cells = ["%.0f Hz" % (1 / measured_round(r)) for r in results]
    out.write("| ceiling: rounds/s on one core | %s | 1 / measured round |\n" % " | ".join(cells))
