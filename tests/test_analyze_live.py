"""``spyanalyze top --live``: the table of a recording still being written, drawn again every
second, from a pipe in a terminal and from a growing file."""

import os
import shlex
import subprocess
import sys
import time

from pythons import live_view_in_terminal, running_target

SPYREC = [sys.executable, "-m", "spyrec"]
SPYANALYZE = [sys.executable, "-m", "spyanalyze"]
HOT = "busy ("  # of tests/targets/many_threads.py (its label is cut to the terminal's width)
CLEAR = b"\x1b[H\x1b[2J"


def _is_hot(function):
    return function is not None and function.startswith(HOT) and "many_thr" in function


def _first_function(screen):
    """The function heading one drawn table (the text after its four number columns)."""
    lines = screen.decode(errors="replace").splitlines()
    for number, line in enumerate(lines):
        if line.lstrip().startswith("self") and "function" in line and number + 1 < len(lines):
            parts = lines[number + 1].split(None, 4)
            return parts[4] if len(parts) == 5 else None
    return None


def test_a_pipe_from_spyrec_in_a_terminal_shows_the_hot_function_and_quits_on_q():
    """``spyrec -o - | spyanalyze top --live -`` in a terminal: the busy thread's function heads
    the table within 2 s; q quits at once (the keyboard is the terminal, standard input the
    pipe), the user's screen comes back with the last table printed on it."""
    with running_target(sys.executable, "many_threads.py", "60", "3", "1") as target:
        line = "%s -q -o - -p %d -r 200 | %s top --live -" % (
            " ".join(map(shlex.quote, SPYREC)), target.pid, " ".join(map(shlex.quote, SPYANALYZE)))

        def heads(shown):
            return any(_is_hot(_first_function(frame)) for frame in shown.split(CLEAR)[1:])

        shown, seen_after, status, quit_after = live_view_in_terminal(["/bin/sh", "-c", line], heads)
    assert heads(shown), shown.decode(errors="replace")[-3000:]
    assert seen_after < 3.0, seen_after      # two Pythons starting, then a table a second
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, shown[-2000:]
    assert quit_after < 2.0, quit_after
    assert b"\x1b[?1049h" in shown[:400]
    after = shown.rpartition(b"\x1b[?1049l")[2]      # back on the user's screen
    assert _is_hot(_first_function(after)), after


def test_a_growing_file_is_followed_to_its_trailer(tmp_path):
    """Not on a terminal: a plain table each second while the file grows, no escape sequence,
    and the end once the recorder writes its trailer."""
    out = tmp_path / "growing.spy"
    with running_target(sys.executable, "many_threads.py", "60", "3", "1") as target:
        recorder = subprocess.Popen(SPYREC + ["-q", "-o", str(out), "-p", str(target.pid),
                                              "-r", "200", "-d", "3.5"])
        try:
            while not out.exists():
                time.sleep(0.05)
            result = subprocess.run(SPYANALYZE + ["top", "--live", str(out), "-n", "3"],
                                    capture_output=True, timeout=60)
        finally:
            recorder.wait(timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"\x1b" not in result.stdout
    tables = [block for block in result.stdout.split(b"spyanalyze top --live: ") if block.strip()]
    counts = [int(block.split(b"\n\n", 1)[1].split()[0]) for block in tables
              if block.split(b"\n\n", 1)[1][:1].isdigit()]
    assert len(counts) >= 2 and counts == sorted(counts) and counts[0] < counts[-1], result.stdout
    assert all(_is_hot(_first_function(block)) for block in tables
               if _first_function(block)), result.stdout
    assert result.stderr == b"", result.stderr       # the trailer came: nothing was lost
