"""Whether a recording's shares match the target's own clock, at a rate or as fast as it goes.

    .venv/bin/python -m bench.bench_phase_shares [--python 3.12,3.15] [--rate 1000,100000]
                                                   [--seconds 3]

Not part of the unit tests.  For each interpreter (labels of tests/pythons.py: pyenv minors,
3.14/3.15 in the sid root) and rate it starts tests/targets/generators.py, which spends even
shares of its wall time in seven phases that differ in how costly their stacks are to read
(nested generators, coroutines, ``json.dumps``, plain calls), records it with ``spyrec -p``,
and prints per phase the target's own share, the share spyanalyze gives (samples weighed in
ticks: each stands for the time to its thread's next sample) and the share of plain sample
counts, then the largest error of each.  Asked for more than it can do, the recorder runs
rounds back to back, and a round that reads a costly stack delays the next sample: plain
counts then under-weigh the costly phases.
"""

import argparse
import json
import subprocess
import sys
from collections import Counter

import spyanalyze
from bench.common import interpreter
from tests.pythons import running_target


def measure(label, rate, seconds, out):
    """(the target's own shares, spyanalyze's shares, plain count shares, status line)."""
    with running_target(interpreter(label), "generators.py", str(seconds + 2)) as target:
        result = subprocess.run([sys.executable, "-m", "spyrec", "-o", out, "-p", str(target.pid),
                                 "-d", str(seconds), "-r", str(rate)], capture_output=True, text=True)
        if result.returncode:
            raise SystemExit("spyrec failed: %s" % result.stderr.strip())
        target.process.wait(timeout=seconds + 30)
        own = json.loads(target.process.stdout.read().decode().strip().splitlines()[-1])["shares"]
    rec = spyanalyze.load(out).filter(idle="exclude")
    totals = rec.by_function().groupby("qualname")["total_samples"].sum()
    weighed = {phase: totals.get(phase, 0) / rec.samples["ticks"].sum() for phase in own}
    names = rec.frames["qualname"].tolist()
    counts = Counter()
    for stack in rec.samples["stack"].tolist():
        counts.update({names[f] for f in rec.stacks["frames"][stack]} & set(own))
    counted = {phase: counts[phase] / len(rec.samples) for phase in own}
    return own, weighed, counted, result.stderr.strip().splitlines()[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.12,3.15")
    parser.add_argument("--rate", default="1000,100000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", default="/tmp/bench-phase-shares.spy")
    args = parser.parse_args()
    for label in args.python.split(","):
        for rate in args.rate.split(","):
            own, weighed, counted, status = measure(label, int(rate), args.seconds, args.out)
            print("\n%s at %s Hz: %s" % (label, rate, status))
            print("%-11s %7s %7s %7s" % ("phase", "own", "ticks", "counts"))
            for phase in sorted(own):
                print("%-11s %7.3f %7.3f %7.3f" % (phase, own[phase], weighed[phase], counted[phase]))
            print("%-11s %7s %7.3f %7.3f" % ("worst error", "",
                                             max(abs(weighed[p] - own[p]) for p in own),
                                             max(abs(counted[p] - own[p]) for p in own)))


if __name__ == "__main__":
    main()
