"""Benchmark the fleet tools: rows per second of ``load_many`` + ``function_totals`` over many
.spy files and over a Parquet dataset, of Parquet export, and of the pandas way (load each
recording and sum ``by_function``) for comparison.

    .venv/bin/python -m bench.bench_fleet                        # 100 recordings of 20,000 samples
    .venv/bin/python -m bench.bench_fleet --recordings 20 --samples 100000

One synthetic recording is made by bench_analyze's generator (shaped like a real one), then
written again as the others under their own hosts and start times, as a fleet's files would
be.  Dask runs on its default local scheduler (threads), then, for the .spy glob, on a local
cluster of ``--workers`` processes (one thread each), as a cluster of machines would run it.
Results go to stdout as Markdown.
"""

import argparse
import copy
import os
import tempfile
import time

import spyanalyze
from spyanalyze import fleet
from spyanalyze.export import parquet

from bench.bench_analyze import generate
from bench.common import command_line


def make_fleet(folder, recordings, samples):
    first = os.path.join(folder, "source.spy")
    generate(first, samples, "a")
    rec = spyanalyze.load(first)
    paths = []
    for i in range(recordings):
        clone = copy.copy(rec)
        clone.header = dict(rec.header, host="host%02d" % (i % 10),
                            start_wall_ns=rec.header["start_wall_ns"] + i)
        path = os.path.join(folder, "run-%04d.spy" % i)
        with open(path, "wb") as out:
            spyanalyze.write(clone, out)
        paths.append(path)
    return paths, len(rec)


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20_000, help="samples per recording")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths, per = make_fleet(folder, args.recordings, args.samples)
        rows = per * len(paths)
        pattern = os.path.join(folder, "run-*.spy")

        def pandas_way():
            return [spyanalyze.load(path).by_function() for path in paths]

        def on_a_cluster():
            import distributed
            with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                          processes=True, dashboard_address=None) as cluster, \
                    distributed.Client(cluster):
                return timed(lambda: fleet.function_totals(spyanalyze.load_many(pattern)))[1]

        def export_all():
            for path in paths:
                parquet.write(spyanalyze.load(path), os.path.join(folder, "dataset"))

        results = [
            ("pandas: load + by_function, one recording at a time", timed(pandas_way)[1]),
            ("load_many(.spy glob) + function_totals",
             timed(lambda: fleet.function_totals(spyanalyze.load_many(pattern)))[1]),
            ("the same on a local cluster of %d worker processes" % args.workers, on_a_cluster()),
            ("export --format parquet (load + write), every recording", timed(export_all)[1]),
            ("load_many(Parquet dataset) + function_totals",
             timed(lambda: fleet.function_totals(
                 spyanalyze.load_many(os.path.join(folder, "dataset"))))[1]),
        ]
    print("Command: `%s`\n" % command_line("bench.bench_fleet"))
    print("%d recordings of %d samples: %d rows\n" % (len(paths), per, rows))
    print("| stage | time | rows/s |")
    print("|---|---|---|")
    for name, seconds in results:
        print("| %s | %.2f s | %.2f M/s |" % (name, seconds, rows / seconds / 1e6))


if __name__ == "__main__":
    main()
