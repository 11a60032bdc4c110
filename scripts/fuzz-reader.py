#!/usr/bin/env python3
"""Fuzz the .spy reader for a while: byte and record mutations of the golden files
(tests/recordfuzz.py) through reading, every view, export and dump, and every CLI command on
one input in ``--cli-every``.

    .venv/bin/python scripts/fuzz-reader.py --minutes 10 [--seed N] [--crashes DIR]

Prints the inputs run, the outcomes and each distinct crash site (an exception that is not the
package's own error, or a warning printed); one input per site is saved in the crashes folder.
Exits 1 when it found any.  The figures of the last long run are in docs/reliability.md.
"""

import argparse
import os
import random
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import recordfuzz  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    parser.add_argument("--cli-every", type=int, default=20, metavar="N",
                        help="run every CLI command on one input in N (default 20)")
    parser.add_argument("--crashes", default=os.path.join(tempfile.gettempdir(), "spy-fuzz-crashes"))
    parser.add_argument("--memory", type=int, default=4096, metavar="MIB",
                        help="address-space limit, so a memory bomb is found rather than suffered")
    args = parser.parse_args()
    limit = args.memory << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    inputs = recordfuzz.seeds()
    os.makedirs(args.crashes, exist_ok=True)
    deadline = time.monotonic() + 60 * args.minutes
    outcomes = {}
    crashes = {}
    count = 0
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "fuzzed.spy")
        while time.monotonic() < deadline:
            data = recordfuzz.mutated(rng, rng.choice(inputs))
            outcome = recordfuzz.run_case(data, path, cli=count % args.cli_every == 0)
            count += 1
            kind = outcome if recordfuzz.is_crash(outcome) else outcome.split(":")[0]
            outcomes[kind] = outcomes.get(kind, 0) + 1
            if recordfuzz.is_crash(outcome) and outcome not in crashes:
                crashes[outcome] = os.path.join(args.crashes, "crash-%d-%d.spy" % (seed, len(crashes)))
                with open(crashes[outcome], "wb") as f:
                    f.write(data)
                print("crash: %s (input saved as %s)" % (outcome, crashes[outcome]), flush=True)
    print("seed %d: %d inputs in %.1f minutes (%d through every CLI command): %d read, %d refused, "
          "%d distinct crash sites"
          % (seed, count, args.minutes, (count + args.cli_every - 1) // args.cli_every,
             outcomes.get("read", 0), outcomes.get("refused", 0), len(crashes)))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
