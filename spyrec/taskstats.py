"""How many times a process's threads, all of them, were switched onto a CPU: one question to
the kernel's taskstats (generic netlink), however many threads there are.

The answer is the sum of the third ``schedstat`` field over the live threads, plus what
exited threads left to the thread group (``fill_stats_for_tgid`` and ``delayacct_add_tsk`` in
the kernel's ``kernel/taskstats.c`` and ``kernel/delayacct.c``).  The sampler compares it with
the counts it read itself to learn that none of its idle threads ran, without reading each
(see ``spyrec.dormancy``).  The kernel answers only callers with ``CAP_NET_ADMIN`` in its
first network namespace; anywhere else ``ProcessSwitches.open`` returns None and the sampler
reads every thread as before.
"""

import socket
import struct

NETLINK_GENERIC = 16
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
TASKSTATS_CMD_GET = 1
TASKSTATS_CMD_ATTR_TGID = 2
TASKSTATS_TYPE_TGID = 2
TASKSTATS_TYPE_STATS = 3
TASKSTATS_TYPE_AGGR_TGID = 5
#: ``struct taskstats``: ``cpu_count`` (u64, after version, exit code, flag and nice) has been at
#: this offset since version 1 of the structure (include/uapi/linux/taskstats.h).
CPU_COUNT_OFFSET = 16

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_GENL = struct.Struct("=BBH")  # genlmsghdr: command, version, reserved
_ATTR = struct.Struct("=HH")  # nlattr: length, type
_U64 = struct.Struct("=Q")
#: An answer for one thread group: the nested aggregate, the group's id, the statistics.
_REPLY = struct.Struct("=HHHHIHH")
REPLY_AT = _HEADER.size + _GENL.size
STATS_AT = REPLY_AT + _REPLY.size


def _attribute(kind, data):
    length = _ATTR.size + len(data)
    return _ATTR.pack(length, kind) + data + b"\0" * (-length % 4)


def _message(family, command, attributes, sequence):
    payload = _GENL.pack(command, 1, 0) + attributes
    return _HEADER.pack(_HEADER.size + len(payload), family, NLM_F_REQUEST, sequence, 0) + payload


def _attributes(data, offset):
    found = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + _ATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


class ProcessSwitches:
    """A netlink socket asking the kernel for one process's total switch count."""

    def __init__(self, sock, family, pid):
        self._sock = sock
        self._pid = pid
        self._request = _message(family, TASKSTATS_CMD_GET,
                                 _attribute(TASKSTATS_CMD_ATTR_TGID, struct.pack("=I", pid)), 2)
        self._family = family
        self._buffer = bytearray(4096)

    @classmethod
    def open(cls, pid):
        """A counter for process ``pid``, or None where the kernel will not give one."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        except (OSError, AttributeError):
            return None
        try:
            sock.settimeout(0.5)  # the kernel answers at once; never hang the sampler
            sock.bind((0, 0))
            sock.send(_message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                               _attribute(CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0"), 1))
            reply = sock.recv(65536)
            kind = _HEADER.unpack_from(reply)[1]
            family_id = _attributes(reply, REPLY_AT).get(CTRL_ATTR_FAMILY_ID)
            if kind != GENL_ID_CTRL or family_id is None or len(family_id) < 2:
                raise OSError("no taskstats family")
            counter = cls(sock, struct.unpack_from("=H", family_id)[0], pid)
            if counter.switches() is None:
                raise OSError("taskstats refused")
            return counter
        except (OSError, struct.error):
            sock.close()
            return None

    def switches(self):
        """The process's threads' switch count now, or None when the kernel did not say."""
        try:
            self._sock.send(self._request)
            size = self._sock.recv_into(self._buffer)
        except OSError:
            return None
        data = self._buffer
        if size < STATS_AT + CPU_COUNT_OFFSET + 8:
            return None
        length, kind = _HEADER.unpack_from(data)[:2]
        if kind != self._family or length > size:
            return None  # an error (NLMSG_ERROR: no such process, not allowed) or a stray
        _, aggregate, _, tgid_kind, tgid, _, stats_kind = _REPLY.unpack_from(data, REPLY_AT)
        if (aggregate != TASKSTATS_TYPE_AGGR_TGID or tgid_kind != TASKSTATS_TYPE_TGID
                or tgid != self._pid or stats_kind != TASKSTATS_TYPE_STATS):
            return None
        return _U64.unpack_from(data, STATS_AT + CPU_COUNT_OFFSET)[0]

    def close(self):
        self._sock.close()

