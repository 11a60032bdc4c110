"""Real programs that time their own parts, next to what each profiler attributes to them.

    .venv/bin/python -m bench.bench_self_timed --python /path/to/venv/bin/python [...]
        [--sid-packages SITE_PACKAGES] [--programs jinja,sphinx,asgi,lark] [--rate 500] [--runs 1]

Not part of the unit tests.  Each ``--python`` is an interpreter with jinja2, Sphinx, FastAPI,
uvicorn and lark installed (those that ``--programs`` asks for).  ``--sid-packages`` (a
site-packages directory holding pure-Python jinja2 and markupsafe) also runs the jinja2 program
under python3.15 in the sid root (scripts/make-sid-root.sh), where CPython's own sampler runs
too.  The programs (bench/targets/jinja_timed.py, sphinx_timed.py, asgi_timed.py: a web app
loaded by a client on this machine, and lark_timed.py: its garbage collector's share, as
``gc.callbacks`` measure it, against spyrec's ``<GC>`` samples) measure with ``perf_counter``
the share of one function's wall time spent in a few of the functions it calls; every profiler
launches the program (RATE Hz) and its share of a function is the share of the samples in the
measuring function that are also in that one (for the web app, whose thread sleeps between
requests, the samples of the thread asleep included).  Each program runs alone, then under
each profiler: spyrec (stacks copied at interrupts, as root), spyrec with ``SPYREC_BPF=0``
(read from outside), py-spy and Austin where they support the version, and CPython 3.15's
``profiling.sampling`` in the sid root.  The program's own figures in each run are printed
next to the profiler's, with the largest difference between them: a profiler that stops the
program also changes what it measures.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

from bench.common import BENCH, interpreter, log, sid_root
from bench.peers import find_peer

PROGRAMS = {
    # name: (target script, the measuring function, its arguments given the work directory)
    "jinja": ("jinja_timed.py", "timed_loop", lambda work, seconds: [str(seconds)]),
    "sphinx": ("sphinx_timed.py", "timed_build", lambda work, seconds: [work, "40"]),
    "asgi": ("asgi_timed.py", "serve", lambda work, seconds: [str(seconds)]),
    "lark": ("lark_timed.py", "timed_parse", lambda work, seconds: [str(seconds)]),
}
#: Programs whose measuring thread also sleeps: their shares are of wall time, so the profilers
#: keep the samples of a thread asleep (spyrec's idle ones, py-spy's ``--idle``, Austin
#: without ``-s``).
WALL = {"asgi"}
#: Where the sid root's python3.15 finds the packages copied into it.
SID_PACKAGES = "/tmp/spybench-packages"


def own_figures(stderr):
    """The JSON line the program printed last on stderr."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("the program printed no figures: %s" % stderr.strip()[-300:])


def run(command, env=None):
    """(the program's own figures, wall seconds) of one run."""
    start = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env)
    wall = time.monotonic() - start
    return own_figures(done.stderr), wall


def loaded_stacks(path, wall=False):
    """Busy samples (with ``wall``, all samples) of a file spyanalyze reads (.spy, Austin's
    MOJO, py-spy's raw), as a Counter of stacks of qualified names, root first."""
    import spyanalyze

    rec = spyanalyze.load(path).filter(idle="include" if wall else "exclude")
    names = rec.frames["qualname"].tolist()
    frames = rec.stacks["frames"]
    return Counter(tuple(names[f] for f in frames[s]) for s in rec.samples["stack"].tolist())


def sampler_stacks(path):
    """profiling.sampling's ``--collapsed`` output (``tid:N;file:qualname:line;... count``)."""
    stacks = Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            text, _, count = line.rstrip("\n").rpartition(" ")
            names = tuple(frame.rsplit(":", 2)[1] for frame in text.split(";")
                          if frame.count(":") >= 2 and not frame.startswith("tid:"))
            stacks[names] += int(count)
    return stacks


def moments(spy, calls_path, measuring, part):
    """(share of the samples in ``measuring`` taken inside a ``part`` call by the program's
    log, share that put the thread in ``part``, share of the time the calls took, share of
    the samples in ``part`` taken inside a call): the samples' moments are each one's ``t``
    (when its stack was copied or read), between the first call's start and the last's end."""
    import numpy as np

    import spyanalyze

    with open(calls_path) as f:
        calls = np.array(json.load(f), dtype=np.int64).reshape(-1, 2)
    rec = spyanalyze.load(spy)
    names = rec.frames["qualname"].tolist()
    frames = rec.stacks["frames"]
    stacks = [[names[f] for f in frames[s]] for s in rec.samples["stack"].tolist()]
    when = rec.header["start_mono_ns"] + rec.samples["t"].to_numpy()
    keep = np.array([measuring in stack for stack in stacks]) \
        & (when >= calls[0, 0]) & (when <= calls[-1, 1])
    at = np.searchsorted(calls[:, 0], when[keep], side="right") - 1
    inside = (at >= 0) & (when[keep] < calls[np.clip(at, 0, None), 1])
    claimed = np.array([part in stack for stack, kept in zip(stacks, keep) if kept])
    busy = (calls[:, 1] - calls[:, 0]).sum() / (calls[-1, 1] - calls[0, 0])
    agree = (claimed & inside).sum() / max(claimed.sum(), 1)
    return inside.mean(), claimed.mean(), busy, agree


def profiled(stacks, measuring, parts):
    """(samples in ``measuring``, {part: share of those samples also in that part}).  Before
    3.11 a frame has no qualified name: ``Template.render`` is then ``render``."""
    inside = Counter()
    for stack, count in stacks.items():
        if measuring in stack:
            inside[stack[stack.index(measuring) + 1:]] += count
    total = sum(inside.values())
    shares = {part: sum(c for s, c in inside.items()
                        if part in s or part.rsplit(".", 1)[-1] in s) / max(total, 1)
              for part in parts}
    return total, shares


class Interpreter:
    """How to run a program under one interpreter: on the host, or in the sid root."""

    def __init__(self, python, root=None):
        self.python, self.root = python, root

    def argv(self, script, args):
        if self.root is None:
            return [self.python, os.path.join(BENCH, "targets", script)] + args
        return ["chroot", self.root, "env", "PYTHONPATH=" + SID_PACKAGES, self.python,
                os.path.join(SID_PACKAGES, script)] + args

    def version(self):
        command = ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        prefix = ["chroot", self.root] if self.root else []
        return subprocess.run(prefix + [self.python] + command, capture_output=True, text=True,
                              check=True).stdout.strip()


def profilers(python, version, work, rate, wall):
    """(name, runner) of each profiler that can record this interpreter: runner(argv) ->
    (own figures, wall seconds, Counter of stacks); ``wall``: samples of a thread asleep
    kept."""
    spyrec = [sys.executable, "-m", "spyrec", "-q", "-r", str(rate)]
    out = os.path.join(work, "profile")

    def spyrec_run(outside):
        def runner(argv):
            env = dict(os.environ, SPYREC_BPF="0") if outside else None
            own, seconds = run(spyrec + ["-o", out + ".spy", "--"] + argv, env)
            return own, seconds, loaded_stacks(out + ".spy", wall)
        return runner

    found = [("spyrec", spyrec_run(False)), ("spyrec SPYREC_BPF=0", spyrec_run(True))]
    minor = tuple(int(n) for n in version.split("."))
    py_spy, austin = find_peer("py-spy"), find_peer("austin")
    if py_spy and minor <= (3, 13):
        def py_spy_run(argv):
            idle = ["--idle"] if wall else []
            own, seconds = run([py_spy, "record", "-r", str(rate), "-f", "raw", "-o",
                                out + ".raw"] + idle + ["--"] + argv)
            return own, seconds, loaded_stacks(out + ".raw", wall)
        found.append(("py-spy", py_spy_run))
    if austin and minor <= (3, 13):
        def austin_run(argv):
            for attempt in range(3):   # Austin 3.7 now and then takes a launched
                try:                   # interpreter for no Python process
                    sleepless = [] if wall else ["-s"]
                    own, seconds = run([austin] + sleepless + ["-b", "-i", str(int(1e6 / rate)),
                                        "-o", out + ".mojo"] + argv)
                    return own, seconds, loaded_stacks(out + ".mojo", wall)
                except RuntimeError:
                    if attempt == 2:
                        raise
        found.append(("austin", austin_run))
    if python.root is not None:
        inside = "/tmp/spybench-sampled.txt"

        def sampler_run(argv):
            chroot, root, env, path, python3, script = argv[:6]
            own, seconds = run([chroot, root, env, path, python3, "-m", "profiling.sampling",
                                "run", "-r", str(rate), "--collapsed", "-o", inside,
                                script] + argv[6:])
            return own, seconds, sampler_stacks(root + inside)
        found.append(("profiling.sampling", sampler_run))
    return found


def stage_sid(root, site_packages):
    """Copy the targets and the pure-Python packages into the sid root (no C extensions:
    markupsafe falls back to its Python code)."""
    staged = root + SID_PACKAGES
    shutil.rmtree(staged, ignore_errors=True)
    for package in ("jinja2", "markupsafe"):
        shutil.copytree(os.path.join(site_packages, package), os.path.join(staged, package),
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for script in ("jinja_timed.py",):
        shutil.copy(os.path.join(BENCH, "targets", script), staged)


def print_table(program, rows):
    """One table per program: a column pair per part (the program's own share, the
    profiler's), then the profiler's samples in the measuring function and the largest
    difference between its shares and the program's, in points."""
    parts = sorted(rows[0][3])
    print("\n**%s**\n" % program)
    print("| CPython | run | wall s | %s | samples | largest difference |"
          % " | ".join("%s: program | profiler" % part for part in parts))
    print("|---|---|---:|%s---:|---:|" % ("---:|---:|" * len(parts)))
    for version, name, wall, own, samples, shares in rows:
        cells = []
        for part in parts:
            cells += ["%.3f" % own[part], "%.3f" % shares[part] if shares else ""]
        worst = ("%.1f" % (100 * max(abs(shares[p] - own[p]) for p in parts))) if shares else ""
        print("| %s | %s | %.1f | %s | %s | %s |" % (version, name, wall, " | ".join(cells),
                                                    samples if shares else "", worst))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=[], type=interpreter,
                        help="an interpreter with jinja2 and Sphinx installed")
    parser.add_argument("--sid-packages", help="site-packages with pure-Python jinja2 and "
                        "markupsafe, to run the jinja2 program under the sid root's python3.15")
    parser.add_argument("--programs", default="jinja,sphinx,asgi,lark")
    parser.add_argument("--seconds", type=float, default=6.0, help="jinja2's run (default 6)")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--moments", action="store_true",
                        help="for the web app under spyrec, also look each sample's moment up "
                             "in the program's log of its compute calls (bench/targets/"
                             "asgi_timed.py): whether the moments fall in them as the time does")
    args = parser.parse_args()
    interpreters = [Interpreter(p) for p in args.python]
    root = sid_root()
    if args.sid_packages:
        if not root:
            raise SystemExit("no sid root: run scripts/make-sid-root.sh")
        stage_sid(root, args.sid_packages)
        interpreters.append(Interpreter("python3.15", root))
    if not interpreters:
        raise SystemExit("give --python or --sid-packages")
    rows = {program: [] for program in args.programs.split(",")}
    found_moments = []
    with tempfile.TemporaryDirectory() as work:
        calls = os.path.join(work, "calls.json")
        if args.moments:
            os.environ["ASGI_TIMED_LOG"] = calls
        for python in interpreters:
            version = python.version()
            for program in rows:
                if python.root is not None and program != "jinja":  # packages not staged
                    continue
                script, measuring, arguments = PROGRAMS[program]
                argv = python.argv(script, arguments(os.path.join(work, program), args.seconds))
                for _ in range(args.runs):
                    own, wall = run(argv)
                    rows[program].append((version, "alone", wall, own, 0, None))
                    for name, runner in profilers(python, version, work, args.rate,
                                                  program in WALL):
                        try:
                            own, wall, stacks = runner(argv)
                        except RuntimeError as exc:   # a peer that failed to start
                            log("%s %s %s failed: %s" % (version, program, name, exc))
                            rows[program].append((version, name + " (failed)", 0.0,
                                                  {p: 0.0 for p in own}, 0, None))
                            continue
                        samples, shares = profiled(stacks, measuring, own)
                        rows[program].append((version, name, wall, own, samples, shares))
                        log("%s %s %s: %s" % (version, program, name, shares))
                        if args.moments and program == "asgi" and name.startswith("spyrec"):
                            found_moments.append((version, name) + moments(
                                os.path.join(work, "profile.spy"), calls, measuring,
                                "compute"))
    for program, found in rows.items():
        if found:
            print_table(program, found)
    if found_moments:
        print("\n**the web app's samples, moment by moment** (`compute`)\n")
        print("| CPython | run | samples taken in a call | samples that show one | the calls' "
              "share of the time | samples showing one that were taken in one |")
        print("|---|---|---:|---:|---:|---:|")
        for version, name, inside, claimed, busy, agree in found_moments:
            print("| %s | %s | %.3f | %.3f | %.3f | %.3f |"
                  % (version, name, inside, claimed, busy, agree))


if __name__ == "__main__":
    main()
