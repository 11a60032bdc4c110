"""Native frames' source lines in a short recording: from its first samples on, or only once
their units are decoded.

    .venv/bin/python -m bench.bench_native_lines [--python 3.12,3.11] [--seconds 2] [--runs 3]

Not a unit test; needs root (``--native``).  tests/targets/natives.py (a thread sorting with a
Python key, one sleeping in ``time.sleep``) is recorded by PID with ``--native`` for SECONDS,
each run a new recorder, which decodes its units' line tables afresh.  For two C functions
whose library keeps DWARF lines where the interpreter is pyenv's (``list_sort_impl`` in the
interpreter, ``clock_nanosleep`` in the C library with its separate debug file), it prints the
samples holding the function, the share of them whose frame has its line, and when the first
one with its line came (seconds into the recording).
"""

import argparse
import os
import subprocess
import sys
import tempfile

from bench.common import command_line, interpreter, kill, read_line, test_target

FUNCTIONS = ("list_sort_impl", "clock_nanosleep")


def lined(path):
    """{function: (samples holding it, share with its line, first such sample's time in s)}."""
    import spyanalyze

    rec = spyanalyze.load(path, all_native=True)
    frames = rec.frames
    with_line = set(frames.index[frames["source"] != ""])
    found = {}
    for function in FUNCTIONS:
        ids = set(frames.index[frames["qualname"] == function])
        count = with_lines = 0
        first = None
        for t, stack in sorted(zip(rec.samples["t"].tolist(), rec.samples["stack"].tolist())):
            held = ids.intersection(rec.stack_table.tuples[stack])
            if held:
                count += 1
                if held & with_line:
                    with_lines += 1
                    first = t / 1e9 if first is None else first
        found[function] = (count, with_lines / max(count, 1), first)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="3.12,3.11",
                        help="comma-separated labels of tests/pythons.py, or paths")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("Command:", command_line("bench.bench_native_lines"))
    print("\n| CPython | run | function | samples | with its line | first with it (s) |")
    print("|---|---:|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "run.spy")
        for label in args.python.split(","):
            python = interpreter(label)
            for run in range(1, args.runs + 1):
                target = subprocess.Popen([python, test_target("natives.py"), "60"],
                                          stdout=subprocess.PIPE, text=True)
                try:
                    read_line(target, 10)
                    subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-p",
                                    str(target.pid), "-d", str(args.seconds), "-r", "500",
                                    "--native"], check=True)
                finally:
                    kill(target)
                for function, (count, share, first) in lined(out).items():
                    print("| %s | %d | `%s` | %d | %.1f%% | %s |" % (
                        label, run, function, count, 100 * share,
                        "-" if first is None else "%.2f" % first))


if __name__ == "__main__":
    main()
