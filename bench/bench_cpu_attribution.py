"""Where CPU time goes: a target's own clock next to the CPU-weighted shares of a recording.

    .venv/bin/python -m bench.bench_cpu_attribution [--python 3.11,3.12] [--runs 2]
        [--burst-ms 1.5] [--pause-ms 2] [--spyrec DIR]

Not part of the unit tests.  tests/targets/cpu_then_wait.py computes for BURST ms and sleeps
for PAUSE ms, over and over, timing its own CPU time in each (``time.thread_time``).  Each run
records it with ``spyrec -p`` at 1 kHz for 2.5 s and prints the share of the CPU time the
analyser gives ``compute`` (``by_function(weight="cpu")``), the target's own share, and the
recorder's round cost (``sampling_cost_ns``: min, mean, max).  ``--spyrec DIR`` records and
analyses with the ``spyrec``/``spyanalyze`` packages found in DIR instead (an older checkout,
``git archive REV spyrec spyanalyze | tar -x -C DIR``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench.common import REPO, interpreter
from tests.pythons import running_target

ANALYSE = """
import json, sys
import spyanalyze
rec = spyanalyze.load(sys.argv[1])
table = rec.by_function(weight="cpu").set_index("qualname")
print(json.dumps({"share": float(table.loc["compute", "total_share"]),
                  "cost": rec.trailer["sampling_cost_ns"]}))
"""


def measure(label, burst, pause, source, workdir):
    out = os.path.join(workdir, "run.spy")
    env = dict(os.environ, PYTHONPATH=source)
    with running_target(interpreter(label), "cpu_then_wait.py", "3", str(burst),
                        str(pause)) as target:
        subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-p", str(target.pid),
                        "-d", "2.5", "-r", "1000"], check=True, cwd=workdir, env=env)
        target.process.wait(timeout=30)
        own = json.loads(target.process.stdout.read().decode().strip().splitlines()[-1])
    found = json.loads(subprocess.run([sys.executable, "-c", ANALYSE, out], check=True,
                                      capture_output=True, text=True, cwd=workdir,
                                      env=env).stdout)
    return found, own["compute"] / (own["compute"] + own["pause"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.11,3.12")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--burst-ms", type=float, default=1.5)
    parser.add_argument("--pause-ms", type=float, default=2.0)
    parser.add_argument("--spyrec", default=REPO, help="directory holding spyrec/ and spyanalyze/")
    args = parser.parse_args()
    print("| CPython | `compute`'s CPU share: recording | target's own | round cost µs "
          "(min, mean, max) |")
    print("|---|---:|---:|---|")
    with tempfile.TemporaryDirectory() as workdir:
        for label in args.python.split(","):
            for _ in range(args.runs):
                found, own = measure(label, args.burst_ms, args.pause_ms,
                                     os.path.abspath(args.spyrec), workdir)
                cost = ", ".join("%.0f" % (ns / 1000) for ns in found["cost"])
                print("| %s | %.3f | %.3f | %s |" % (label, found["share"], own, cost),
                      flush=True)


if __name__ == "__main__":
    main()
