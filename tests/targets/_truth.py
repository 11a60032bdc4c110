"""Ground-truth helpers shared by the targets (plain Python, runs on 3.6+).

A target reports what an outside observer must find as ONE JSON line on stdout, printed once
every thread is in place:  ``{"pid": ..., "python": "3.11.7", "main": {...}, "threads":
{name: {"ident": ..., "native_id": ..., "name": ...}}, ...}``.  ``ident`` is
``threading.get_ident()`` (= ``PyThreadState.thread_id``), ``native_id`` the kernel TID.

A target that calls ``stop_on_signal()`` before its ready line ends its run early on SIGUSR1
(``stopped()`` is then true): a test that has recorded all it needs sends it rather than wait
out the rest of DURATION (``pythons.stop_target``).
"""

import ctypes
import json
import os
import platform
import signal
import sys
import threading

_SYS_GETTID = 186  # x86-64


def native_id():
    """The kernel TID of the calling thread (threading.get_native_id() exists from 3.8)."""
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    try:
        return ctypes.CDLL(None, use_errno=True).syscall(_SYS_GETTID)
    except Exception:
        return 0


def thread_record():
    return {"ident": threading.get_ident(), "native_id": native_id(),
            "name": threading.current_thread().name}


def ready(**info):
    """Print the ready line (pid and version added) and flush it."""
    record = {"pid": os.getpid(), "python": platform.python_version(),
              "executable": sys.executable}
    record.update(info)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def duration_arg(default=30.0):
    return float(sys.argv[1]) if len(sys.argv) > 1 else default


_stop_signals = []


def stop_on_signal():
    """From now on SIGUSR1 ends the run before its DURATION: ``stopped()`` says when it came."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: _stop_signals.append(signum))


def stopped():
    return bool(_stop_signals)
