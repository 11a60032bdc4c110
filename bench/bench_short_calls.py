"""A short call that releases the GIL, recorded with copies at interrupts and read from outside.

    .venv/bin/python -m bench.bench_short_calls [--python 3.11,3.12,3.13] [--seconds 5]
                                                [--runs 2]

Each target loops over Python work and a 64 KiB ``os.pread`` of a cached file (a few
microseconds with the GIL released) and times its own share in ``reading``, from the clock call
before it to the one after (a little more than the call):
bench/targets/short_calls.py (``reading(fd, size)``) and tests/targets/short_reads.py
(``reading(fd)``: the frames of the calls around it take other sizes).  Each runs under
``spyrec -r 1000`` (copies at interrupts, the default as root) and ``spyrec -r 1000 --no-bpf``
(every stack read from outside), launched by spyrec, ``--runs`` times each.  Prints the share of
samples whose innermost frame is ``reading``, next to the target's own, and for reads from
outside the share of stacks of ``main`` that cannot happen (a callee under the line of another
call: a caller copied at one moment, its callee at another).  Not a unit test.
"""

import argparse
import json
import os
import subprocess
import tempfile

from bench.common import BENCH, command_line, installed, interpreter

HERE = os.path.dirname(BENCH)
TARGETS = (os.path.join(BENCH, "targets", "short_calls.py"),
           os.path.join(HERE, "tests", "targets", "short_reads.py"))
SPYREC = os.path.join(HERE, ".venv", "bin", "spyrec")
MODES = (("copies", ()), ("--no-bpf", ("--no-bpf",)))


def call_lines(script):
    """{callee: the line of main that calls it} of a target."""
    lines = {}
    with open(script) as f:
        for number, line in enumerate(f, 1):
            code = line.strip()
            if code.startswith("py_work(random"):
                lines["py_work"] = lines["randint"] = number
            elif code.startswith("reading("):
                lines["reading"] = number
    return lines


def measure(python, script, flags, seconds):
    """(the target's own share, the recording's share of ``reading``, share of stacks under
    ``main`` that cannot happen) of one recording."""
    import spyanalyze
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.spy")
        done = subprocess.run([SPYREC, "-o", out, "-r", "1000", *flags, "--", python, script,
                               str(seconds)], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise SystemExit("spyrec failed: %s" % done.stderr.strip()[-300:])
        own = [json.loads(line) for line in done.stdout.splitlines() if "read_share" in line]
        rec = spyanalyze.load(out)
    names, lines = rec.frames["name"], rec.frames["line"]
    wanted = call_lines(script)
    in_main = reading = impossible = 0
    for stack, count in rec.samples["stack"].value_counts().items():
        frames = list(rec.stacks["frames"].iloc[int(stack)])
        called = [names.iloc[frame] for frame in frames]
        if "main" not in called:
            continue
        at = called.index("main")
        in_main += count
        below = called[at + 1:]
        if not below:
            continue
        reading += count * (below[-1] == "reading")
        line = wanted.get(below[0])
        if below[0] in ("reading", "py_work") and len(below) > 1 or \
                line is not None and lines.iloc[frames[at]] != line:
            impossible += count
    return own[-1]["read_share"], reading / in_main, impossible / in_main


#: The table's head (Markdown).
HEAD = ("| Python | target | its own timing | copies | `--no-bpf` | `--no-bpf`: stacks that "
        "cannot happen |\n|---|---|---:|---:|---:|---:|")


def rows(label, seconds, runs):
    """The table's rows for one Python label, a target each."""
    if not installed(label):
        yield "| %s | not installed | | | | |" % label
        return
    python = interpreter(label)
    for script in TARGETS:
        own, shares, wrong = [], {name: [] for name, _ in MODES}, []
        for _ in range(runs):
            for name, flags in MODES:
                timed, share, impossible = measure(python, script, flags, seconds)
                own.append(timed)
                shares[name].append(share)
                if flags:
                    wrong.append(impossible)
        yield "| %s | %s | %s | %s | %s | %s |" % (
            label, os.path.basename(script), percents(own), percents(shares["copies"]),
            percents(shares["--no-bpf"]), percents(wrong))


def percents(values):
    return ", ".join("%.1f%%" % (100 * value) for value in values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="3.11,3.12,3.13",
                        help="labels of tests/pythons.py, comma-separated")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print("Command: %s\n\n%s" % (command_line("bench.bench_short_calls"), HEAD))
    for label in args.python.split(","):
        for row in rows(label, args.seconds, args.runs):
            print(row, flush=True)


if __name__ == "__main__":
    main()
