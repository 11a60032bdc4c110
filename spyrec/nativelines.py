"""Source lines of native frames, and the calls inlined there, decoded by a helper thread so
that sampling never waits.

Decoding a compilation unit's line table takes milliseconds (tens for CPython's eval loop), and a
program meets dozens of units in its first seconds: done in the sampling thread, those rounds
would be lost, and lost in the code met first, a bias.  So the sampling thread only looks up
what is decoded; an address in a unit not decoded yet is asked of the helper, and its frame
goes without a line until the unit is ready, a few rounds later, when the stacks defined
meanwhile are given it (spyrec.resolver, ``StackResolver.settle``).  The helper runs with a short
switch interval, so the sampling thread waits no longer for the interpreter's lock than it
would for a round's own work.
"""

import gc
import queue
import sys
import threading
import time
from typing import Dict, Optional, Set, Tuple

from spyrec.elflines import LineTable, line_table
from spyrec.symbols import ElfImage

#: Seconds a thread may hold the interpreter's lock while another waits, while the helper has
#: work (it is put back as it was when the helper has none).
SWITCH_INTERVAL = 0.0005
#: Where a line is not known yet.
PENDING = object()
#: Seconds between looks at whether the helper is done (``wait_idle``).
IDLE_POLL = 0.005


class NativeLines:
    """The line tables of a target's libraries: ``frames`` answers at once, from what is
    decoded; ``wait=True`` decodes in the caller instead (a one-off read, ``spyrec where``)."""

    def __init__(self, wait: bool = False):
        self.wait = wait
        self._tables: Dict[int, LineTable] = {}
        self._asked: Set[Tuple[int, Optional[int]]] = set()
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._helper: Optional[threading.Thread] = None
        self._interval = 0.005
        #: Whether the helper has units to decode: a runnable thread of the recorder's own,
        #: not other work on the machine (see spyrec.cpubudget).
        self.working = False

    def frames(self, key: int, image: ElfImage, debug: Optional[ElfImage], address: int):
        """The places of ``address`` in the library ``key`` (``image``, with its separate
        ``debug`` file): its source file and line, and the functions inlined there
        (``spyrec.elflines.Place``, innermost first); None where it has none, or PENDING."""
        if self.wait:
            self._decode(key, image, debug, address)
        table = self._tables.get(key)
        if table is None:
            self._ask(key, None, (key, image, debug, address))
            return PENDING
        offset = table.unit_of(address)
        if offset is None:
            return None
        ready, places = table.ready_frames(address, offset)
        if ready:
            return places
        self._ask(key, offset, (key, image, debug, address))
        return PENDING

    def wait_idle(self, timeout: float) -> None:
        """Return once the helper has decoded every unit asked of it, or after ``timeout``
        seconds."""
        end = time.monotonic() + timeout
        while (self.working or not self._queue.empty()) and time.monotonic() < end:
            time.sleep(IDLE_POLL)

    def _ask(self, key: int, offset: Optional[int], work) -> None:
        if (key, offset) in self._asked:
            return
        self._asked.add((key, offset))
        self._queue.put(work)
        if self._helper is None:
            self._interval = sys.getswitchinterval()
            self._helper = threading.Thread(target=self._decode_asked, name="spyrec-lines",
                                            daemon=True)
            self._helper.start()

    def _decode_asked(self) -> None:
        while True:
            if self._queue.empty():
                self.working = False
                sys.setswitchinterval(self._interval)
            key, image, debug, address = self._queue.get()
            self.working = True
            sys.setswitchinterval(SWITCH_INTERVAL)
            self._asked.discard((key, self._decode(key, image, debug, address)))
            # what the decoding left alive stays: out of the collector's full passes, which
            # would hold the sampling thread up as long as they walk it
            gc.freeze()

    def _decode(self, key: int, image: ElfImage, debug: Optional[ElfImage],
                address: int) -> Optional[int]:
        """Build library ``key``'s line table if not built, and decode the unit holding
        ``address``; that unit's offset (None: no unit holds it, or the file did not parse)."""
        try:
            table = self._tables.get(key)
            if table is None:
                table = self._tables[key] = line_table(image, debug)
            offset = table.unit_of(address)
            if offset is not None:
                table.decode(offset)
            return offset
        except Exception:  # a file that does not parse: no lines from it, and no retries
            self._tables[key] = LineTable(None)
            return None
