"""``spyrec top``: a live table of the heaviest functions, in a terminal and on a pipe."""

import os
import subprocess
import sys

from pythons import live_view_in_terminal, running_target
from spyformat import read_recording

SPYREC = [sys.executable, "-m", "spyrec"]
HOT = "busy (many_threads.py)"
CLEAR = b"\x1b[H\x1b[2J"


def _rows(frame):
    """The table rows of one drawn screen: (%Own, function)."""
    rows = []
    for line in frame.replace(b"\x1b[?1049l", b"\n").decode(errors="replace").splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5 and parts[0].endswith("%") and parts[0][:-1].replace(".", "").isdigit():
            rows.append((float(parts[0][:-1]), parts[4]))
    return rows


def test_top_shows_the_hot_function_within_two_seconds_and_quits_on_q(tmp_path):
    """In a terminal (a pseudo-terminal), the busy thread's function heads the table within
    2 s of starting; q quits at once, the user's screen comes back, and ``-o`` kept the
    recording whole."""
    out = tmp_path / "top.spy"
    with running_target(sys.executable, "many_threads.py", "60", "3", "1") as target:
        argv = SPYREC + ["top", "-p", str(target.pid), "-o", str(out), "-r", "200"]

        def heads(shown):
            frames = shown.split(CLEAR)
            return len(frames) > 1 and any(_rows(frame)[:1] and _rows(frame)[0][1] == HOT
                                           for frame in frames[1:])

        shown, seen_after, status, quit_after = live_view_in_terminal(argv, heads, 10)
    frames = shown.split(CLEAR)
    assert heads(shown), shown.decode(errors="replace")
    assert seen_after < 2.5, seen_after
    first = next(_rows(frame) for frame in frames[1:] if _rows(frame))
    assert first[0][1] == HOT and first[0][0] > 50, first
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, shown[-2000:]
    assert quit_after < 2.0, quit_after
    assert shown.startswith(b"\x1b[?1049h") or b"\x1b[?1049h" in shown[:200]
    assert b"\x1b[?1049l" in shown[-400:]
    with open(out, "rb") as f:
        rec = read_recording(f)
    busy = target.info["threads"]["busy-0"]["native_id"]
    ticks = rec.trailer["ticks"]  # a table is drawn after half a second: 100 rounds at 200 Hz
    assert ticks >= 50 and (rec.samples["tid"] == busy).sum() >= 0.95 * ticks, ticks
    assert rec.trailer["stop_reason"] == "interrupted"


def test_top_on_a_pipe_prints_plain_tables_and_stops_after_its_duration():
    """Not on a terminal: one plain table a second, no escape sequence, and the end after
    ``-d`` (no keyboard to quit with)."""
    with running_target(sys.executable, "many_threads.py", "60", "3", "1") as target:
        result = subprocess.run(SPYREC + ["top", "-p", str(target.pid), "-d", "2.2", "-r", "200"],
                                capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"\x1b" not in result.stdout
    tables = [table for table in result.stdout.split(b"spyrec top: ") if table.strip()]
    assert len(tables) >= 2, result.stdout
    assert all(_rows(table)[0][1] == HOT for table in tables), result.stdout


def test_top_of_a_process_that_is_not_there_is_one_line():
    result = subprocess.run(SPYREC + ["top", "-p", "999999999"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["spyrec: error: no process with PID 999999999"]
    assert result.stdout == ""
