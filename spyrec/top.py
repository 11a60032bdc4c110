"""``spyrec top``: a running process's heaviest functions, refreshed every second, as
``py-spy top`` shows them, while the recording goes on to a file or nowhere.

``Tally`` is a sink in front of the writer: every call goes on to the writer, and each sample is
counted by function on its way (own: the innermost frame; total: anywhere on the stack).
``Screen`` draws the counts in the terminal's alternate screen (``spyformat.terminal``, where
``Keys`` reads a ``q`` from it without waiting for Enter).
"""

import os
import shutil
import time
from collections import Counter

from spyformat import SampleFlag
from spyformat.terminal import LiveScreen
from spyformat.text import printable

#: How often the table is drawn again.
REFRESH_NS = 1_000_000_000
#: Frames and stacks remembered for labels: past this, the tables start again (ids the
#: sampler still uses are then shown as unknown until seen anew).
LABEL_LIMIT = 200_000
NO_FRAMES = "<no Python frames>"
UNKNOWN = "<forgotten stack>"


class Tally:
    """A sink that counts samples by function while passing every call on to ``sink``."""

    def __init__(self, sink, idle=False):
        self._sink = sink
        self.idle = idle
        self._strings = {}  # string id -> text, for the frames' labels
        self._functions = {}  # frame id -> "function (file)"
        self._stacks = {}  # stack id -> (innermost function, every function on it)
        self.own, self.total = Counter(), Counter()  # since the last draw, in samples
        self.own_all, self.total_all = Counter(), Counter()  # whole run, in samples
        self.counted = 0  # samples counted since the last draw
        self.threads = set()  # threads sampled since the last draw
        self.active = set()  # of which found running
        self.gil = 0  # samples holding the GIL since the last draw
        self.seen = 0  # samples since the last draw, idle ones too

    def __getattr__(self, name):  # everything not counted: straight to the sink
        return getattr(self._sink, name)

    def define_string(self, text):
        sid = self._sink.define_string(text)
        _bounded(self._strings)[sid] = text
        return sid

    def define_frame(self, file, name, qualname, line, column=-1, kind=0, source=0):
        fid = self._sink.define_frame(file, name, qualname, line, column, kind, source)
        label = self._strings.get(qualname) or self._strings.get(name, UNKNOWN)
        filename = self._strings.get(file, "?")
        _bounded(self._functions)[fid] = "%s (%s)" % (printable(label),
                                                      printable(os.path.basename(filename)))
        return fid

    def define_stack(self, frame_ids):
        sid = self._sink.define_stack(frame_ids)
        names = [self._functions.get(fid, UNKNOWN) for fid in frame_ids]
        _bounded(self._stacks)[sid] = (names[-1] if names else NO_FRAMES,
                                       frozenset(names or (NO_FRAMES,)))
        return sid

    def sample(self, t, pid, tid, stack, cpu, rss, flags, syscall=0, wchan=0):
        self._sink.sample(t, pid, tid, stack, cpu, rss, flags, syscall, wchan)
        self._count(tid, stack, flags)

    def samples(self, t, pid, rss, rows):
        self._sink.samples(t, pid, rss, rows)
        for tid, stack, flags in zip(rows[0], rows[1], rows[2]):
            self._count(tid, stack, flags)

    def _count(self, tid, stack, flags):
        self.threads.add(tid)
        self.seen += 1
        if flags & SampleFlag.GIL:
            self.gil += 1
        if flags & SampleFlag.IDLE:
            if not self.idle:
                return
        else:
            self.active.add(tid)
        leaf, names = self._stacks.get(stack, (UNKNOWN, (UNKNOWN,)))
        self.counted += 1
        self.own[leaf] += 1
        self.total.update(names)

    def take(self):
        """The counts since the last call, added to the whole run's, and started again."""
        own, total, counted = self.own, self.total, self.counted
        threads, active = len(self.threads), len(self.active)
        gil_share = self.gil / self.seen if self.seen else 0.0
        self.own_all.update(own)
        self.total_all.update(total)
        self.own, self.total, self.counted = Counter(), Counter(), 0
        self.threads, self.active, self.gil, self.seen = set(), set(), 0, 0
        return own, total, counted, threads, active, gil_share


def _bounded(table):
    """``table``, emptied first when it has reached ``LABEL_LIMIT`` entries."""
    if len(table) >= LABEL_LIMIT:
        table.clear()
    return table


class Screen:
    """Draws a ``Tally`` about every second: in the alternate screen on a terminal (left as it
    was at the end), as successive plain tables elsewhere."""

    def __init__(self, stream, pid, interval_ns):
        self.tally = None  # set with the process's version once attached (see ``watch``)
        self.stream = stream
        self.pid = pid
        self.version = "?"
        self.interval_s = interval_ns / 1e9
        self.screen = LiveScreen(stream)
        self.terminal = self.screen.terminal
        self._next = 0

    def watch(self, tally, process):
        self.tally, self.pid, self.version = tally, process.pid, process.version_string

    def __call__(self, stats, elapsed_ns):
        """The sampler's progress callback: draw when a refresh is due."""
        if self.tally is None or elapsed_ns < self._next:
            return
        self._next = elapsed_ns + REFRESH_NS
        self.draw(stats, elapsed_ns)

    def draw(self, stats, elapsed_ns):
        own, total, counted, threads, active, gil_share = self.tally.take()
        seconds = elapsed_ns / 1e9
        width, height = shutil.get_terminal_size((100, 30))
        lines = ["spyrec top: PID %d (Python %s) at %s; q or Ctrl-C quits"
                 % (self.pid, self.version, time.strftime("%H:%M:%S")),
                 "%.0f s, %d samples, %.0f Hz; threads %d (%d running); GIL held in %.0f%% "
                 "of samples"
                 % (seconds, stats.samples, stats.rounds / seconds if seconds > 0 else 0.0,
                    threads, active, 100.0 * gil_share),
                 "",
                 "%7s %7s %9s %10s  %s" % ("%Own", "%Total", "OwnTime", "TotalTime",
                                            "Function (file)")]
        rows = max(1, height - len(lines) - 1) if self.terminal else 20
        interval = self.interval_s
        for name, count in own.most_common(rows):
            lines.append("%6.1f%% %6.1f%% %8.2fs %9.2fs  %s"
                         % (100.0 * count / max(1, counted), 100.0 * total[name] / max(1, counted),
                            self.tally.own_all[name] * interval,
                            self.tally.total_all[name] * interval, name))
        if not own:
            lines.append("(no %ssamples in the last second)"
                         % ("" if self.tally.idle else "running "))
        self.screen.draw(lines, width)

    def close(self):
        self.screen.close()
