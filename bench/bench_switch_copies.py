"""What taking each thread as it was at the round's moment gives, and what it costs: the
threads' switches recorded and a copy made as each one leaves its CPU (spyrec.switches,
``StackCapture.at``), against reading how a thread is from /proc a moment later
(``SPYREC_SWITCHES=0``).

    .venv/bin/python -m bench.bench_switch_copies [--python 3.11] [--runs 3] [--rate 1000]
        [--native]

Not part of the unit tests; needs root.  Two targets, each launched by spyrec with and
without, alternately:

* tests/targets/work_naps.py: a thread that computes 0.4 ms and naps 0.3 ms in turn, timing
  each part; the share of its samples (weighed as the analyser weighs them, idle included) in
  each part next to the part's share of the time by its own clock.
* bench/targets/handoffs.py: two threads handing a token through queues, a context switch of
  each at every handoff (the copies' worst case); handoffs a second, next to the same program
  alone.

With ``--native`` spyrec records native frames too, and the share of the samples without
them is given as well.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench.common import BENCH, interpreter, log, mean_ci, test_target

HANDOFFS = os.path.join(BENCH, "targets", "handoffs.py")
VARIANTS = (("recorded from /proc", "0"), ("at the round's moment", "1"))


def spyrec(python, script, seconds, rate, switches, out, native=False):
    """The target's last printed line (JSON), run under spyrec."""
    env = dict(os.environ, SPYREC_SWITCHES=switches)
    done = subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-r", str(rate),
                           *(["--native"] if native else []), "--", python, script,
                           str(seconds)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def part_shares(path):
    """{part: its share of the samples of ``main``, weighed by ticks, idle included}, and
    under ``native`` the share of those samples without a native frame."""
    import numpy as np

    import spyanalyze

    rec = spyanalyze.load(path)
    names = rec.frames["qualname"].tolist()
    frames = rec.stacks["frames"]
    stacks = [{names[f] for f in frames[s]} for s in rec.samples["stack"].tolist()]
    weights = rec.samples["ticks"].to_numpy()
    main = np.array(["main" in stack for stack in stacks])
    shares = {part: weights[main & np.array([part in stack for stack in stacks])].sum()
              / weights[main].sum() for part in ("crunch", "nap")}
    # (every native frame kept: a thread running Python code shows none of its own in the views)
    whole = spyanalyze.load(path, all_native=True)
    kinds = whole.frames["kind"].tolist()
    native = np.array([any(kinds[f] == "native" for f in whole.stacks["frames"][s])
                       for s in whole.samples["stack"].tolist()])
    return shares, 1 - native[main].mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.11", type=interpreter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--native", action="store_true", help="record native frames too")
    args = parser.parse_args()
    python = str(args.python)
    naps = {name: [] for name, _ in VARIANTS}
    bare = {name: [] for name, _ in VARIANTS}  # shares of samples without native frames
    handoffs = {name: [] for name, _ in VARIANTS + (("alone", None),)}
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "run.spy")
        for run in range(args.runs):
            for name, switches in VARIANTS:
                own = spyrec(python, test_target("work_naps.py"), args.seconds, args.rate,
                             switches, out, args.native)
                found, without = part_shares(out)
                naps[name].append({part: (found[part], own[part]) for part in found})
                bare[name].append(without)
                log("%d %s: %s, %.1f%% without native frames"
                    % (run, name, naps[name][-1], 100 * without))
            alone = subprocess.run([python, HANDOFFS, str(args.seconds)], capture_output=True,
                                   text=True, check=True)
            handoffs["alone"].append(json.loads(alone.stdout)["handoffs_per_s"])
            for name, switches in VARIANTS:
                handoffs[name].append(spyrec(python, HANDOFFS, args.seconds, args.rate,
                                             switches, out, args.native)["handoffs_per_s"])
            log("%d handoffs: %s" % (run, {k: v[-1] for k, v in handoffs.items()}))
    print("\n**a thread that works and naps** (%s, %d Hz, %d runs of %g s each%s)\n"
          % (args.python, args.rate, args.runs, args.seconds,
             ", native frames" if args.native else ""))
    print("| taken | `crunch`: samples, own clock | `nap`: samples, own clock |%s"
          % (" without native frames |" if args.native else ""))
    print("|---|---|---|%s" % ("---:|" if args.native else ""))
    for name, _ in VARIANTS:
        cells = ["; ".join("%.1f%%, %.1f%%" % (100 * run[part][0], 100 * run[part][1])
                           for run in naps[name]) for part in ("crunch", "nap")]
        if args.native:
            cells.append("%.1f%%" % (100 * sum(bare[name]) / len(bare[name])))
        print("| %s | %s |" % (name, " | ".join(cells)))
    print("\n**two threads handing a token back and forth** (handoffs a second)\n")
    print("| run | handoffs/s | next to alone |")
    print("|---|---:|---:|")
    for name, values in handoffs.items():
        mean, half = mean_ci(values)
        ratios = [v / a for v, a in zip(values, handoffs["alone"])]
        print("| %s | %.0f ± %.0f | %.3f |" % (name, mean, half, sum(ratios) / len(ratios)))


if __name__ == "__main__":
    main()
