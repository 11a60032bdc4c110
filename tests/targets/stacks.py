"""A target with every kind of frame a walker must get right.  Plain Python, runs on 3.6+.

Usage: ``python stacks.py [DURATION=30]``.  Exits after DURATION seconds.

Once everything is in place it prints one JSON line (see _truth.py) with ``pid``, ``python``,
``main`` and ``threads`` (by name: ``ident``, ``native_id``), ``far_line`` and ``far_file``.
Ground truth, innermost frame first (line markers are ``# @name`` comments in this file; tests
resolve them from the source, never hard-code numbers):

* main thread ("MainThread"): ``main_sleep`` @main-sleep <- ``recurse`` x RECURSION (the
  innermost at @recurse-leaf, the others at @recurse) <- ``main`` @main-call <- ``<module>``
  @module-call.  Sleeping.
* "sleeper": ``sleeper`` @sleep (time.sleep) <- ``run`` <- ``_bootstrap_inner`` <- ``_bootstrap``.
  Never holds the GIL.
* "spinner": ``spin`` (qualname ``Outer.Inner.spin``, a method of a nested class) @spin,
  CPU-bound (one-line loop, so every sample is on that line) <- ``spinner`` @spinner-call.
* "generator": ``ticker`` (a generator frame, stored in the generator object, not the
  datastack) @gen, CPU-bound <- ``consume`` @consume.
* "unicode": ``émoji_sleep`` @uni-sleep in ``uni_名前_😀.py`` (a kind-4 file name) <-
  ``関数_level2`` @kanji (kind-2 name) <- ``café_level3`` @cafe (kind-1, non-ASCII name).
* "lambda": ``<lambda>`` @lambda (qualname ``lambda_thread.<locals>.<lambda>``), sleeping
  <- ``lambda_thread`` @lambda-call.
* "far": ``far_away`` at line ``far_line`` (> 65,535: compiled after 70,000 blank lines, file
  ``far_file``), sleeping <- ``far_thread`` @far-call.
* "init": ``__init__`` (qualname ``Sleepy.__init__``) @init-sleep <- ``init_thread``
  @init-call.  The call is warmed up first, so 3.13 runs it through its specialised
  allocate-and-init path, which pushes an extra (non-user) frame in between.

Eight threads in all (MainThread + the seven above); every non-main thread's stack ends in
``run`` <- ``_bootstrap_inner`` <- ``_bootstrap`` (threading.py).  Each thread's ``threading``
name is the key it is listed under above; the Thread objects keep their attributes in every
way CPython allows: shared keys / inline values (most), a materialised ``__dict__`` ("far"),
and a dict grown past the shared keys ("lambda").
"""

import importlib.util
import os
import threading
import time

from _truth import duration_arg, ready, thread_record

RECURSION = 10
HERE = os.path.dirname(os.path.abspath(__file__))
UNI_FILE = os.path.join(HERE, "uni_\u540d\u524d_\U0001f600.py")
FAR_FILE = "<far \u00e9\u00e9>"
FAR_SOURCE = "\n" * 70000 + "def far_away(d):\n    time.sleep(d)\n"
FAR_LINE = 70002

DURATION = duration_arg()
DEADLINE = time.time() + DURATION
records = {}
in_place = {}


def arrive(name):
    """Record the calling thread's identity, then say it is (about to be) in place."""
    records[name] = thread_record()
    in_place[name].set()


def sleeper():
    arrive("sleeper")
    time.sleep(DURATION)  # @sleep


class Outer(object):
    class Inner(object):
        def spin(self, deadline):
            n = 0
            arrive("spinner")
            while time.time() < deadline: n += 1  # @spin
            return n


def spinner():
    return Outer.Inner().spin(DEADLINE)  # @spinner-call


def ticker(deadline):
    n = 0
    arrive("generator")
    while time.time() < deadline: n += 1  # @gen
    yield n


def consume():
    for n in ticker(DEADLINE):  # @consume
        pass


def load_unicode_module():
    spec = importlib.util.spec_from_file_location("uni_mod", UNI_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UNI = load_unicode_module()


def 関数_level2():
    arrive("unicode")
    UNI.émoji_sleep(DURATION)  # @kanji


def café_level3():
    関数_level2()  # @cafe


def lambda_thread():
    me = threading.current_thread()
    for i in range(40):  # outgrow the class's shared attribute keys: a combined dict
        setattr(me, "extra_%d" % i, i)
    f = lambda d: time.sleep(d)  # @lambda
    arrive("lambda")
    f(DURATION)  # @lambda-call


def far_thread():
    vars(threading.current_thread())  # 3.11+: turns the inline attribute values into a dict
    namespace = {"time": time}
    exec(compile(FAR_SOURCE, FAR_FILE, "exec"), namespace)
    arrive("far")
    namespace["far_away"](DURATION)  # @far-call


class Sleepy(object):
    def __init__(self, duration, name=None):
        if name:
            arrive(name)
        if duration:  # warm-up calls must not release the GIL: the spinners would delay them
            time.sleep(duration)  # @init-sleep


def init_thread():
    # The same call site runs 200 times, so 3.13 specialises it (CALL_ALLOC_AND_ENTER_INIT)
    # before the last, long call.
    for i in range(200):
        last = i == 199
        Sleepy(DURATION if last else 0, "init" if last else None)  # @init-call


THREADS = {"sleeper": sleeper, "spinner": spinner, "generator": consume,
           "unicode": café_level3, "lambda": lambda_thread, "far": far_thread,
           "init": init_thread}


def main_sleep():
    time.sleep(DURATION)  # @main-sleep


def recurse(n):
    if n <= 1:
        return main_sleep()  # @recurse-leaf
    return recurse(n - 1)  # @recurse


def main():
    for name, func in THREADS.items():
        in_place[name] = threading.Event()
        threading.Thread(target=func, name=name, daemon=True).start()
    for event in in_place.values():
        event.wait()
    ready(main=thread_record(), threads=records, recursion=RECURSION, far_line=FAR_LINE,
          far_file=FAR_FILE)
    recurse(RECURSION)  # @main-call


if __name__ == "__main__":
    main()  # @module-call
