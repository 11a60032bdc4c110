"""How often a generator is found on the stack within the phase that consumes it, next to py-spy.

    .venv/bin/python bench/bench_generator_shares.py [--python 3.11,3.12] [--seconds 6]
                                                      [--runs 2]

Not part of the unit tests.  For each interpreter (labels of tests/pythons.py) it starts
tests/targets/generators.py on each phase alone (a generator resumed by C code, by a Python
loop, a coroutine chain, ``json.dumps``...), records it with ``spyrec -p``, then records it
again with ``py-spy record`` (one after the other: py-spy stops the target for each sample, and
a target stopped while a generator yields changes what a recorder reading it meanwhile sees),
and prints, per phase, the share of the phase's samples that have the phase's generator on
the stack, by each profiler, and the difference.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from pythons import py_spy_stacks, python_for, running_target, spyrec_stacks  # noqa: E402

#: Each phase of the target, and the generator its samples should show.
PHASES = {"via_list": "nested", "via_sum": "<genexpr>", "via_join": "<genexpr>",
          "via_for": "nested", "via_async": "items", "via_json": "_iterencode",
          "via_tokens": "tokens"}


def share_inside(stacks, phase):
    """(samples in ``phase``, share of them with the phase's generator above the phase)."""
    inside = [stack[stack.index(phase):] for stack in stacks if phase in stack]
    if not inside:
        return 0, 0.0
    return len(inside), sum(PHASES[phase] in stack for stack in inside) / len(inside)


def measure(label, phase, seconds, py_spy, workdir):
    out, raw = os.path.join(workdir, "run.spy"), os.path.join(workdir, "py-spy.txt")
    with running_target(python_for(label), "generators.py", str(2 * seconds + 5),
                        phase) as target:
        ours = subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-p",
                               str(target.pid), "-d", str(seconds), "-r", "500"],
                              capture_output=True, text=True)
        if ours.returncode:
            raise SystemExit("spyrec failed: %s" % ours.stderr.strip())
        peer = subprocess.run([py_spy, "record", "-r", "500", "-d", str(int(seconds)), "-f",
                               "raw", "-o", raw, "-p", str(target.pid)], capture_output=True,
                              text=True)
        if peer.returncode:
            raise SystemExit("py-spy failed: %s" % peer.stderr.strip())
    return share_inside(spyrec_stacks(out), phase), share_inside(py_spy_stacks(raw), phase)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.11,3.12")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable) + os.pathsep
                          + os.environ.get("PATH", ""))
    if py_spy is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory() as workdir:
        print("| CPython | phase | generator | spyrec | py-spy | difference |")
        print("|---|---|---|---:|---:|---:|")
        for label in args.python.split(","):
            for phase, generator in PHASES.items():
                for _ in range(args.runs):
                    (n_ours, ours), (n_theirs, theirs) = measure(label, phase, args.seconds,
                                                                 py_spy, workdir)
                    print("| %s | %s | `%s` | %.3f (%d) | %.3f (%d) | %+.1f |"
                          % (label, phase, generator, ours, n_ours, theirs, n_theirs,
                             100 * (ours - theirs)), flush=True)


if __name__ == "__main__":
    main()
