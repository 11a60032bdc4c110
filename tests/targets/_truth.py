"""Ground-truth helpers shared by the targets (plain Python, runs on 3.6+).

A target reports what an outside observer must find as ONE JSON line on stdout, printed once
every thread is in place:  ``{"pid": ..., "python": "3.11.7", "main": {...}, "threads":
{name: {"ident": ..., "native_id": ..., "name": ...}}, ...}``.  ``ident`` is
``threading.get_ident()`` (= ``PyThreadState.thread_id``), ``native_id`` the kernel TID.
"""

import ctypes
import json
import os
import platform
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
