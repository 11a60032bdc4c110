"""The recorder's exceptions, in the one tree rooted at ``spyformat.errors.SpyError``.

The command-line entry points turn any ``SpyError`` into a single ``spyrec: error: ...`` line
and a non-zero exit; anything else is a bug and keeps its traceback.  Torn reads while
sampling are expected (the target keeps running) and are counted, never raised.
"""

import os

from spyformat.errors import SpyError


class TargetNotFound(SpyError):
    """The process does not exist (or exited before we could attach)."""


class TargetReplaced(TargetNotFound):
    """The process replaced its program (exec): the interpreter that was attached is gone."""

    #: The program it runs now.
    program: str = ""


class NotPython(SpyError):
    """The process runs, but no CPython interpreter could be found in it."""


class PermissionDenied(SpyError):
    """We may not read the target's memory."""

    HINT = (
        "run as root, or grant CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep on the python running spyrec, "
        "or --cap-add SYS_PTRACE in a container), or lower /proc/sys/kernel/yama/ptrace_scope to 0"
    )
    #: As root, "run as root" is no help: what else refuses it.
    ROOT_HINT = (
        "refused even to root: the process may be the init of this machine or of another "
        "namespace, or be protected by Yama (ptrace_scope 3) or a security module"
    )

    @classmethod
    def hint(cls):
        return cls.ROOT_HINT if os.geteuid() == 0 else cls.HINT


class LaunchError(SpyError):
    """The command to record cannot be started, or brought up no Python."""


class OutputError(SpyError):
    """The output file cannot be written."""


class UnsupportedPython(SpyError):
    """A CPython was found, but its version or build cannot be walked."""


class MemoryReadError(Exception):
    """A read of target memory failed (unmapped address, short read, target gone).

    Not a user's error: while sampling it is a torn read, counted; while attaching it becomes
    the error that says what the process is (see ``PythonProcess.attach``).
    """
