"""The live views' terminal (``spyrec top``, ``spyanalyze top --live``): a table drawn again in
the terminal's alternate screen, and a ``q`` read from the keyboard without waiting for Enter."""

import os
import select
import sys
import time
from typing import List, Optional, TextIO


class LiveScreen:
    """Draws whole screens: in the alternate screen on a terminal (the user's screen comes back
    as it was at the end), as successive plain blocks elsewhere."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.terminal = stream.isatty()
        self._opened = False

    def draw(self, lines: List[str], width: int) -> None:
        if self.terminal:
            if not self._opened:
                self.stream.write("\033[?1049h")
                self._opened = True
            self.stream.write("\033[H\033[2J" + "\n".join(line[:width] for line in lines))
        else:
            self.stream.write("\n".join(lines) + "\n\n")
        self.stream.flush()

    def close(self) -> None:
        if self._opened:
            self.stream.write("\033[?1049l")
            self.stream.flush()
            self._opened = False


class Keys:
    """``q`` pressed in the terminal, read without waiting for Enter (the terminal's mode is
    restored by ``close``).  The keyboard is standard input when that is a terminal, else the
    controlling terminal (standard input may be the recording, piped in); with neither,
    nothing is read."""

    def __init__(self, stream=None):
        self._fd: Optional[int] = None
        self._own = False
        self._saved = None
        stream = sys.stdin if stream is None else stream
        try:
            if stream.isatty():
                fd = stream.fileno()
            elif stream is sys.stdin:
                fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
                self._own = True
            else:
                return
            import termios
            import tty
            self._fd = fd
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except (OSError, ValueError, AttributeError, ImportError):
            if self._own and self._fd is not None:
                os.close(self._fd)
            self._fd = None

    def quit(self, timeout: float = 0.0) -> bool:
        """Whether ``q`` was pressed (waiting up to ``timeout`` seconds for a key)."""
        if self._fd is None:
            time.sleep(timeout)
            return False
        try:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            return bool(ready) and b"q" in os.read(self._fd, 64).lower()
        except OSError:
            return False

    def close(self) -> None:
        if self._saved is not None and self._fd is not None:
            import termios
            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            except OSError:
                pass
            self._saved = None
        if self._own and self._fd is not None:
            os.close(self._fd)
        self._fd = None
