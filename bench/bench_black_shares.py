"""A real program that measures itself: black's own timing of its parser and its generator
chain, next to what spyrec and py-spy attribute to them.

    .venv/bin/python -m bench.bench_black_shares --python /path/to/venv/bin/python [...]
                                                  [--rate 500] [--runs 1]

Not part of the unit tests.  Each ``--python`` must have black installed in pure Python
(``pip install --no-binary black black``).  black reformats (``--diff``) a copy of that
interpreter's ``_pydecimal.py`` through bench/targets/black_timed.py, which reports the share
of ``_format_str_once``'s wall time spent in ``lib2to3_parse`` and in ``LineGenerator.visit``
(nested generators).  The program runs alone, under ``spyrec`` and under ``py-spy record``
(launch mode, RATE Hz each), and for each run the script prints black's own shares, wall
time, and the shares of ``_format_str_once`` samples that each profiler puts under
``lib2to3_parse`` and under ``visit``; for spyrec also its torn samples and the share of
samples rooted at ``<module>`` (shut-down samples without Python frames left out).  Its
``spyrec`` is the default recorder (stacks copied at interrupts, as root); set
``SPYREC_BPF=0`` for reads from outside.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.common import BLACK_TIMED, interpreter
from tests.pythons import py_spy_stacks, spyrec_stacks


def profiled_shares(stacks):
    """(samples inside ``_format_str_once``, share under the parser, share under ``visit``)."""
    inside = [stack[stack.index("_format_str_once") + 1:] for stack in stacks
              if "_format_str_once" in stack]
    if not inside:
        return 0, 0.0, 0.0
    return (len(inside), sum("lib2to3_parse" in s for s in inside) / len(inside),
            sum("visit" in s for s in inside) / len(inside))


def run(command):
    """(black's own shares, wall seconds) of one run of ``command``."""
    start = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - start
    for line in reversed(done.stderr.splitlines()):
        if line.startswith("{"):
            return json.loads(line), wall
    raise SystemExit("%s failed: %s" % (command[0], done.stderr.strip()[-300:]))


def spyrec_health(path):
    """(share of samples torn, share rooted at <module>), shut-down samples left out: those of
    the last half second without Python frames (the interpreter's last collections among
    them)."""
    import spyanalyze

    rec = spyanalyze.load(path)
    samples = rec.samples
    names = rec.frames["name"].tolist()
    frames = rec.stacks["frames"]
    end = samples["t"].max() - 500_000_000
    kept = rooted = 0
    for stack, t in zip(samples["stack"].tolist(), samples["t"].tolist()):
        first = names[frames[stack][0]] if len(frames[stack]) else ""
        if first in ("<no Python frames>", "<GC>") and t > end:  # shutting down
            continue
        kept += 1
        rooted += first == "<module>"
    return samples["torn"].mean(), rooted / max(kept, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, type=interpreter,
                        help="an interpreter with black installed in pure Python (a path, or "
                             "a label of tests/pythons.py)")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    bindir = os.path.dirname(sys.executable)
    spyrec = shutil.which("spyrec", path=bindir)
    py_spy = shutil.which("py-spy", path=bindir + os.pathsep + os.environ.get("PATH", ""))
    if spyrec is None or py_spy is None:
        raise SystemExit("needs spyrec and py-spy next to this interpreter (pip install py-spy)")
    print("| CPython | run | wall s | black: parser | black: visit | profiler: parser "
          "| profiler: visit | samples | torn | rooted |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for python in args.python:
            version, stdlib = subprocess.run(
                [python, "-c", "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); "
                 "print(sysconfig.get_paths()['stdlib'])"],
                capture_output=True, text=True, check=True).stdout.split()
            source = os.path.join(work, "decimal_copy.py")
            shutil.copy(os.path.join(stdlib, "_pydecimal.py"), source)
            target = [python, BLACK_TIMED, source]
            for _ in range(args.runs):
                own, wall = run(target)
                print("| %s | alone | %.1f | %.3f | %.3f | | | | | |"
                      % (version, wall, own["parse"], own["visit"]), flush=True)
                spy = os.path.join(work, "run.spy")
                own, wall = run([spyrec, "-q", "-o", spy, "-r", str(args.rate), "--"] + target)
                n, parse, visit = profiled_shares(spyrec_stacks(spy))
                torn, rooted = spyrec_health(spy)
                print("| %s | spyrec | %.1f | %.3f | %.3f | %.3f | %.3f | %d | %.1f%% | %.1f%% |"
                      % (version, wall, own["parse"], own["visit"], parse, visit, n,
                         100 * torn, 100 * rooted), flush=True)
                raw = os.path.join(work, "py-spy.txt")
                own, wall = run([py_spy, "record", "-r", str(args.rate), "-f", "raw", "-o", raw,
                                 "--"] + target)
                n, parse, visit = profiled_shares(py_spy_stacks(raw))
                print("| %s | py-spy | %.1f | %.3f | %.3f | %.3f | %.3f | %d | | |"
                      % (version, wall, own["parse"], own["visit"], parse, visit, n),
                      flush=True)


if __name__ == "__main__":
    main()
