"""lark's Earley parser on a JSON document, timing its garbage collector itself.

    python lark_timed.py SECONDS

The parser makes and drops objects by the million, and the collector runs often.  At exit it
prints to stderr, as JSON, the share of ``timed_parse``'s wall time spent in collections, as
``gc.callbacks`` measure it (a callback at each collection's start and stop), under the name
of the frame spyrec gives a sample taken during one (``<GC>``).
"""

import gc
import json
import sys
import time

from lark import Lark

GRAMMAR = r"""
?value: dict | list | ESCAPED_STRING -> string | SIGNED_NUMBER -> number
      | "true" -> true | "false" -> false | "null" -> null
list : "[" [value ("," value)*] "]"
dict : "{" [pair ("," pair)*] "}"
pair : ESCAPED_STRING ":" value
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""
DOCUMENT = json.dumps([{"k%d" % i: [i, "s" * (i % 7), {"x": i * 1.5, "y": [True, None]}]}
                       for i in range(60)])

collecting = [0.0, 0.0]  # time in collections, and the start of the one running


def on_collection(phase, info):
    if phase == "start":
        collecting[1] = time.perf_counter()
    else:
        collecting[0] += time.perf_counter() - collecting[1]


def timed_parse(parser, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        parser.parse(DOCUMENT)


def main():
    parser = Lark(GRAMMAR, start="value", parser="earley")
    gc.callbacks.append(on_collection)
    start = time.perf_counter()
    timed_parse(parser, float(sys.argv[1]))
    total = time.perf_counter() - start
    gc.callbacks.remove(on_collection)
    print(json.dumps({"<GC>": collecting[0] / total}), file=sys.stderr)


if __name__ == "__main__":
    main()
