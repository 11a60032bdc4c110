"""How whole the stacks of a recording are: samples without Python frames, rooted at the
module, torn.

    .venv/bin/python -m bench.bench_stack_health [--target pandas_work.py] [--python PY]
                                                 [--runs 2] [--rate 1000] [--spyrec DIR]

Not part of the unit tests.  Starts tests/targets/TARGET with PY (default: this
interpreter), records it for 3 s with ``spyrec -p``, and prints, over its busy samples, the
share without any Python frame, the share whose stack holds ``<module>``, and the share
marked torn.  ``--spyrec DIR`` records with the ``spyrec`` package found in DIR (an older
checkout: ``git archive REV spyrec | tar -x -C DIR``).
"""

import argparse
import os
import subprocess
import sys
import tempfile

from bench.common import REPO, interpreter, python_help
from tests.pythons import running_target


def health(path):
    import spyanalyze

    rec = spyanalyze.load(path).filter(idle="exclude")
    names = rec.frames["name"].tolist()
    stacks = [[names[f] for f in rec.stacks["frames"][s]] for s in rec.samples["stack"].tolist()]
    n = max(len(stacks), 1)
    return (len(stacks), sum(s == ["<no Python frames>"] for s in stacks) / n,
            sum("<module>" in s for s in stacks) / n, float(rec.samples["torn"].mean()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="pandas_work.py")
    parser.add_argument("--python", default=sys.executable, type=interpreter,
                        help=python_help())
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--spyrec", default=REPO, help="directory holding spyrec/")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.spyrec))
    print("| run | samples | no Python frames | rooted at `<module>` | torn |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "run.spy")
        for run in range(1, args.runs + 1):
            with running_target(args.python, args.target, "6") as target:
                subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-p",
                                str(target.pid), "-d", "3", "-r", str(args.rate)], check=True,
                               cwd=work, env=env)
            n, bare, rooted, torn = health(out)
            print("| %d | %d | %.1f%% | %.1f%% | %.1f%% |"
                  % (run, n, 100 * bare, 100 * rooted, 100 * torn), flush=True)


if __name__ == "__main__":
    main()
