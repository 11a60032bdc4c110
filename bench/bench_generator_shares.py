"""How often a generator is found on the stack within the phase that consumes it, next to py-spy.

    .venv/bin/python -m bench.bench_generator_shares [--python 3.11,3.12] [--seconds 6]
                                                       [--runs 2] [--moments]

Not part of the unit tests.  For each interpreter (labels of tests/pythons.py) it starts
tests/targets/generators.py on each phase alone (a generator resumed by C code, by a Python
loop, a coroutine chain, ``json.dumps``...), records it with ``spyrec -p``, then records it
again with ``py-spy record`` (one after the other: py-spy stops the target for each sample, and
a target stopped while a generator yields changes what a recorder reading it meanwhile sees),
and prints, per phase, the share of the phase's samples that have the phase's generator on
the stack, by each profiler, and the difference.

``--moments`` records only ``via_tokens`` (a consumer and a generator taking turns at calling
``work``) and prints, by each profiler, the share of its samples that show the consumer or the
generator innermost (rare: both spend nearly all their time in ``work``) and the share that
put frames of different moments together: the consumer at a line that cannot call what the
stack puts above it.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from bench.common import interpreter, test_target
from tests.pythons import marked_lines, py_spy_stacks, running_target, spyrec_stacks

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


def moments(stacks):
    """(``via_tokens`` samples, share with its consumer or generator innermost, share with its
    consumer at a line that cannot call what is above it); stacks of (name, line) pairs."""
    marks = marked_lines(test_target("generators.py"))
    inside = [[frame for frame in stack[[name for name, _ in stack].index("via_tokens"):]]
              for stack in stacks if "via_tokens" in [name for name, _ in stack]]
    if not inside:
        return 0, 0.0, 0.0
    calleeless = sum(stack[-1][0] != "work" for stack in inside)
    mixed = sum(len(stack) > 1 and (
        stack[1][0] == "tokens" and stack[0][1] != marks["resume-tokens"]
        or stack[1][0] == "work" and stack[0][1] != marks["consume-work"]) for stack in inside)
    return len(inside), calleeless / len(inside), mixed / len(inside)


def measure(label, phase, seconds, py_spy, workdir, lines=False):
    out, raw = os.path.join(workdir, "run.spy"), os.path.join(workdir, "py-spy.txt")
    with running_target(interpreter(label), "generators.py", str(2 * seconds + 5),
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
    if lines:
        return moments(spyrec_stacks(out, lines=True)), moments(py_spy_stacks(raw, lines=True))
    return share_inside(spyrec_stacks(out), phase), share_inside(py_spy_stacks(raw), phase)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.11,3.12")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--moments", action="store_true",
                        help="via_tokens only: stacks of one moment or of several")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable) + os.pathsep
                          + os.environ.get("PATH", ""))
    if py_spy is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory() as workdir:
        if args.moments:
            print("| CPython | innermost not `work`: spyrec | py-spy "
                  "| consumer at a line that cannot call its callee: spyrec | py-spy |")
            print("|---|---:|---:|---:|---:|")
            for label in args.python.split(","):
                for _ in range(args.runs):
                    ours, theirs = measure(label, "via_tokens", args.seconds, py_spy, workdir,
                                           lines=True)
                    print("| %s | %.3f (%d) | %.3f (%d) | %.3f | %.3f |"
                          % (label, ours[1], ours[0], theirs[1], theirs[0], ours[2],
                             theirs[2]), flush=True)
            return
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
