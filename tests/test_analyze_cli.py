"""The spyanalyze command: argument logic in-process (CliRunner), error paths as subprocesses
(exit code, one stderr line, no traceback)."""

import io
import os
import subprocess
import sys
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import spyanalyze
from spyanalyze.cli import GATE_FAILED, main
import spyformat
from spyformat.chunks import encode_preamble

from test_analyze_support import MAIN, RecordingBuilder, app_recording, run_cli

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed


@pytest.fixture
def app_path(tmp_path):
    return app_recording(tmp_path / "app.spy")


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.mark.parametrize("command", [[], ["info"], ["top"], ["diff"], ["filter"], ["export"], ["dump"]])
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output


def test_info_shows_provenance_health_and_threads(app_path):
    result = invoke("info", app_path)
    assert result.exit_code == 0, result.output
    assert "600 in 3 threads of 1 processes" in result.output
    assert "100 Hz requested" in result.output
    assert "samples 600" in result.output                 # the trailer's recorder health
    assert re.search(r"102\s+200\s+1\.000s\s+0%\s+worker", result.output)
    facts = json.loads(invoke("info", app_path, "--json").output)
    assert facts["samples"] == 600 and facts["threads"] == 3


def test_top_lists_the_heaviest_functions_without_idle_samples(app_path):
    result = invoke("top", app_path, "-n", "3")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("400 samples")            # the idler's 200 idle samples are left out
    assert "dot (numpy/core/multiarray.py:741)" in lines[2] and "50.0%" in lines[2]
    assert len(lines) == 5
    everything = invoke("top", app_path, "--idle", "include", "--csv").output.splitlines()
    assert everything[0].startswith("module,qualname,line,self_samples")
    assert len(everything) == 1 + 11


def test_top_with_filters_by_line_and_time_weight(app_path):
    result = invoke("top", app_path, "--thread", "MainThread", "--prune", "stdlib", "--by", "line",
                    "--weight", "cpu", "--sort", "total")
    assert result.exit_code == 0
    assert "thread MainThread; not idle; prune stdlib" in result.output
    # a sample stands for its thread's CPU time until its next sample (see cpu_weights); the
    # built file gives the first sample CPU time of its own (the recorder writes 0 there), so
    # the first parse sample has two intervals' worth, and the last query sample none
    assert re.search(r"50\.5%\s+50\.5%\s+1\.010s\s+1\.010s\s+Handler\.parse \(handlers\.py:20\)",
                     result.output)


def test_filter_writes_a_new_recording(app_path, tmp_path):
    out = tmp_path / "main.spy"
    result = invoke("filter", app_path, "--thread", "Main*", "--include", "query", "-o", out)
    assert result.exit_code == 0
    kept = spyanalyze.load(out)
    assert len(kept) == 100 and set(kept.samples["thread"]) == {"MainThread"}
    assert kept.by_function().iloc[0]["qualname"] == "query"


def test_export_formats_to_files_and_stdout(app_path, tmp_path):
    out = tmp_path / "app.speedscope.json"
    assert invoke("export", app_path, "--format", "speedscope", "-o", out).exit_code == 0
    assert len(json.loads(out.read_text())["profiles"]) == 2        # idle thread left out
    result = invoke("export", app_path, "-f", "collapsed", "--idle", "include", "--weight", "wall")
    assert result.exit_code == 0
    total = sum(int(line.rsplit(" ", 1)[1]) for line in result.output.splitlines())
    assert total == 600 * 10_000                                     # microseconds


def test_dump_prints_every_record(app_path):
    result = invoke("dump", app_path)
    expected = io.StringIO()
    with open(app_path, "rb") as stream:
        spyformat.dump(stream, expected)
    assert result.output == expected.getvalue()
    assert "HEADER" in result.output and "TRAILER" in result.output


def test_input_from_standard_input(app_path):
    result = CliRunner().invoke(main, ["top", "-", "-n", "1"], input=app_path.read_bytes())
    assert result.exit_code == 0 and "400 samples" in result.output


def test_diff_table_collapsed_output_and_gate(tmp_path):
    a = app_recording(tmp_path / "a.spy", seconds=2, parse_share=0.25)
    b = app_recording(tmp_path / "b.spy", seconds=4, interval_ns=5_000_000, parse_share=0.5)
    folded = tmp_path / "diff.folded"
    result = invoke("diff", a, b, "--collapsed", folded)
    assert result.exit_code == 0
    assert re.search(r"12\.5%\s+25\.0%\s+\+12\.5\s+\+12\.5\s+\S+\s+\*\s+JSONDecoder\.decode", result.output)
    assert all(re.match(r"^.* \d+ \d+$", line) for line in folded.read_text().splitlines())
    gate = CliRunner().invoke(main, ["diff", str(a), str(b), "--fail-if", "Handler.parse:+5%"])
    assert gate.exit_code == GATE_FAILED
    assert "gate Handler.parse:+5% failed: Handler.parse (handlers.py) 12.5% -> 25.0%" in gate.output
    assert invoke("diff", a, b, "--fail-if", "Handler.parse:+20%").exit_code == 0
    assert invoke("diff", a, b, "--fail-if", "query:+1%").exit_code == 0


def test_usage_errors_exit_2(app_path):
    runner = CliRunner()
    assert runner.invoke(main, ["diff", str(app_path), str(app_path), "--fail-if", "x"]).exit_code == 2
    assert runner.invoke(main, ["export", str(app_path)]).exit_code == 2              # --format missing
    assert runner.invoke(main, ["top", str(app_path), "--include", "kind:nope"]).exit_code == 2
    assert runner.invoke(main, ["top", str(app_path), "--start", "soon"]).exit_code == 2


# ------------------------------------------------------------------------------------------
# Error paths as a user meets them: a subprocess, one line, no traceback


def assert_one_error_line(result, text, code=1):
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("spyanalyze: error: "), stderr
    assert text in stderr
    assert "Traceback" not in stderr


def test_not_a_recording(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a recording\n")
    assert_one_error_line(run_cli("info", path), "not a .spy recording (bad magic)")


def test_truncated_header_and_missing_file(tmp_path):
    path = tmp_path / "cut.spy"
    path.write_bytes(encode_preamble()[:5])
    assert_one_error_line(run_cli("top", path), "too short")
    assert_one_error_line(run_cli("top", tmp_path / "missing.spy"), "no such file")


def test_corrupt_chunk(app_path):
    data = bytearray(app_path.read_bytes())
    data[len(data) // 2] ^= 0x55
    app_path.write_bytes(bytes(data))
    assert_one_error_line(run_cli("export", app_path, "-f", "collapsed"), "checksum mismatch")


def test_empty_result_after_filtering(app_path):
    assert_one_error_line(run_cli("top", app_path, "--thread", "idler"),
                          "no samples left after filtering by not idle")


def test_unknown_thread(app_path):
    assert_one_error_line(run_cli("filter", app_path, "--thread", "ghost", "-o", "/dev/null"),
                          "no thread matches 'ghost'; threads in this recording: MainThread (tid 101)")


def test_empty_recording(tmp_path):
    path = RecordingBuilder().write(tmp_path / "empty.spy")
    assert_one_error_line(run_cli("top", path), "the recording holds no samples")


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a recording\n")
    result = run_cli("--debug", "info", path)
    assert result.returncode != 0 and b"Traceback" in result.stderr


def test_gate_exit_code_as_a_ci_job_sees_it(tmp_path):
    a = app_recording(tmp_path / "a.spy", parse_share=0.25)
    b = app_recording(tmp_path / "b.spy", parse_share=0.5)
    result = run_cli("diff", a, b, "--fail-if", "*parse*:+5%")
    assert result.returncode == GATE_FAILED
    assert b"gate *parse*:+5% failed" in result.stderr and b"Traceback" not in result.stderr


def test_truncated_recording_loads_with_a_warning(app_path, tmp_path):
    cut = tmp_path / "cut.spy"
    cut.write_bytes(app_path.read_bytes()[:-20])
    result = run_cli("info", cut)
    assert result.returncode == 0
    assert b"incomplete" in result.stdout


# ------------------------------------------------------------------------------------------
# The format's golden files (formats/golden): dump output, loading, and the invalid ones

GOLDEN = Path(__file__).resolve().parent.parent / "formats" / "golden"
VALID = sorted((GOLDEN / "v1").glob("*.spy"))
INVALID = sorted((GOLDEN / "invalid").glob("*.spy"))


def test_golden_files_are_there():
    assert VALID and INVALID, "formats/golden is missing: golden files are never created by tests"


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_dump_matches_the_golden_text(path):
    expected = path.with_suffix(".dump.txt")
    assert expected.exists(), "missing golden dump %s" % expected
    result = invoke("dump", path)
    assert result.exit_code == 0
    assert result.stdout == expected.read_text()
    # a recording that lost data says so on stderr, in one line
    assert result.stderr.count("spyanalyze: warning: ") == (path.name != "complete.spy"
                                                             and path.name != "unknown-kind.spy")


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_golden_recordings_load_and_summarise(path):
    rec = spyanalyze.load(path)
    assert invoke("info", path).exit_code == 0
    rec.by_function(), rec.by_thread(), rec.timeline()


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_golden_files_give_one_error_line(path):
    result = CliRunner().invoke(main, ["top", str(path)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("spyanalyze: error: ")


def test_usage_errors_are_one_line_without_traceback():
    import subprocess
    import sys
    for args in (["top", "--bogus"], ["export"], ["nosuchcommand"]):
        result = subprocess.run([sys.executable, "-m", "spyanalyze", *args], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("spyanalyze: error: "), result.stderr


def test_names_from_the_recording_reach_the_terminal_with_control_characters_escaped(tmp_path):
    # a recording is untrusted: a name holding an escape sequence must not drive the terminal
    builder = RecordingBuilder(argv=["python", "evil\x1b]0;title\x07.py"]).thread(1, "Main\x1b[2J")
    builder.sample(0, 1, (("/p/x.py", "f\x1b[31mred", 3),))
    path = builder.write(tmp_path / "evil.spy")
    for args in (["info", path], ["top", path]):
        output = invoke(*args).output
        assert "\x1b" not in output and "\x07" not in output
    assert "f\\x1b[31mred (x.py:3)" in invoke("top", path).output
    assert "evil\\x1b]0;title\\x07.py" in invoke("info", path).output


def test_without_the_analyze_extra_one_line_says_what_to_install(tmp_path):
    # GIVEN an interpreter that cannot import numpy or pandas (no site-packages at all)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo)
    base = getattr(sys, "_base_executable", sys.executable)
    # WHEN the command runs THEN one line and a non-zero exit, no traceback
    result = subprocess.run([base, "-S", "-m", "spyanalyze", "info", str(tmp_path / "x.spy")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "spyanalyze: error: numpy is not installed: pip install 'spyrec[analyze]'"]


def test_hostile_names_reach_no_terminal_and_break_no_collapsed_line(tmp_path):
    # GIVEN names a target (or a stranger's file) could carry: escapes, bells, ';', CR, LF
    nasty = ("/app/x;y\r.py", "f\x07\x1b[2J", 7)
    builder = RecordingBuilder().thread(1, "db;pool\x1b]0;title\x07\nfake line\r")
    for i in range(20):
        builder.sample(i * 10_000_000, 1, (MAIN, nasty))
    path = builder.write(tmp_path / "nasty.spy")
    # WHEN shown or exported
    outputs = [CliRunner().invoke(main, args) for args in (
        ["info", str(path)], ["top", str(path)], ["diff", str(path), str(path)],
        ["export", str(path), "--format", "collapsed", "--threads", "-o", "-"])]
    # THEN no control character gets through, and every collapsed line is "stack count"
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert not any(c in result.output for c in "\x07\x1b\r"), repr(result.output)
    for line in outputs[-1].output.splitlines():
        stack, count = line.rsplit(" ", 1)
        assert count.isdigit() and len(stack.split(";")) == 3, line


def test_filter_keeps_what_the_input_said_of_itself(tmp_path):
    # GIVEN a recording whose recorder was killed (no trailer), one thread ended, one not
    builder = RecordingBuilder().thread(1, "MainThread").thread(2, "worker")
    builder.threads[(builder.pid, 2)]["end_ns"] = 150_000_000
    for i in range(20):
        builder.sample(i * 10_000_000, 1, (MAIN,)).sample(i * 10_000_000, 2, (MAIN,))
    path = builder.write(tmp_path / "killed.spy", trailer=False)
    # WHEN filtered
    out = tmp_path / "out.spy"
    result = CliRunner().invoke(main, ["filter", str(path), "-o", str(out), "--start", "0.05"])
    assert result.exit_code == 0, result.output
    # THEN it still has no trailer (info still warns), and THREAD times are integers
    with open(out, "rb") as f:
        data = spyformat.read_recording(f)
    assert not data.trailer
    assert all(isinstance(v, int) for r in data.threads.values() for k, v in r.items()
               if k.endswith("_ns") and v is not None), data.threads
    info = CliRunner().invoke(main, ["info", str(out)])
    assert "incomplete" in info.output


# ------------------------------------------------------------------------------------------
# Lost data: every command says so on stderr, --strict makes it an error


def flipped_length(path, tmp_path):
    """The recording with one bit flipped in the length of its second SAMPLES chunk, which then
    claims more than the file holds: everything from there on reads as a torn tail."""
    with open(path, "rb") as f:
        chunks = [c for c in spyformat.SpyReader(f).chunks() if c.kind == spyformat.Kind.SAMPLES]
    data = bytearray(path.read_bytes())
    data[chunks[1].offset + 2] ^= 0x10                  # payload_length += 1 MiB
    damaged = tmp_path / "flipped.spy"
    damaged.write_bytes(bytes(data))
    return damaged, chunks[1].offset, len(data)


LOSSY_COMMANDS = [["info"], ["top"], ["export", "-f", "collapsed"], ["export", "-f", "speedscope"],
                  ["dump"], ["filter", "-o", "{out}"], ["diff", "{path}"]]


@pytest.mark.parametrize("command", LOSSY_COMMANDS, ids=lambda c: " ".join(c[:3]))
def test_every_command_warns_of_lost_data_and_strict_refuses_it(command, tmp_path):
    # GIVEN a recording written in many chunks, whose second SAMPLES chunk length took a flipped bit
    source = app_recording(tmp_path / "source.spy", max_batch=50)
    damaged, offset, size = flipped_length(source, tmp_path)
    args = [a.format(out=tmp_path / "out.spy", path=damaged) for a in command]
    args = args[:1] + [str(damaged)] + args[1:]
    # WHEN a command reads it
    result = CliRunner().invoke(main, args)
    # THEN it works on what is left, and one warning line on stderr says how much was lost
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("spyanalyze: warning: ")]
    assert len(warnings) == 1 + (command[0] == "diff"), result.stderr
    lost = size - offset
    assert ("the last %d bytes of the file (%.1f%%) could not be read: the chunk at byte offset %d "
            "claims" % (lost, 100.0 * lost / size, offset)) in warnings[0]
    assert lost / size > 0.5                           # most of the recording
    # AND under --strict the same command fails in one line
    strict = CliRunner().invoke(main, ["--strict"] + args)
    assert strict.exit_code == 1
    errors = strict.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("spyanalyze: error: %s lost data: the last" % damaged)


def test_the_api_says_what_was_lost_and_strict_refuses_it(tmp_path):
    from spyanalyze.errors import IncompleteRecording
    torn = GOLDEN / "v1" / "torn-tail.spy"
    recording = spyanalyze.load(torn)
    assert len(recording.lost) == 2 and "could not be read" in recording.lost[0]
    assert "no trailer" in recording.lost[1]
    assert recording.filter(idle="exclude").lost == recording.lost      # filters keep it
    assert spyanalyze.load(GOLDEN / "v1" / "complete.spy").lost == ()
    facts = json.loads(invoke("info", "--json", torn).stdout)            # and info --json
    assert facts["lost"] == list(recording.lost)
    with pytest.raises(IncompleteRecording, match="torn-tail.spy lost data: the last 121 bytes"):
        spyanalyze.load(torn, strict=True)


def test_a_samples_chunk_with_a_bad_checksum_is_skipped_and_said(tmp_path):
    # GIVEN a recording in many chunks with one byte flipped inside its second SAMPLES chunk
    source = app_recording(tmp_path / "source.spy", max_batch=50)
    with open(source, "rb") as f:
        chunks = [c for c in spyformat.SpyReader(f).chunks() if c.kind == spyformat.Kind.SAMPLES]
    data = bytearray(source.read_bytes())
    data[chunks[1].offset + 40] ^= 0x01
    damaged = tmp_path / "damaged.spy"
    damaged.write_bytes(bytes(data))
    # WHEN a command reads it: the other chunks' samples are there, and the loss is one line
    result = CliRunner().invoke(main, ["top", str(damaged), "--idle", "include"])
    assert result.exit_code == 0
    assert result.stdout.startswith("%d samples" % (len(spyanalyze.load(source)) - 50))
    assert result.stderr.splitlines() == [
        "spyanalyze: warning: %s lost data: 1 SAMPLES chunk (%d bytes, %.1f%% of the file) failed its "
        "checksum and was skipped, the first at byte offset %d: its samples are lost"
        % (damaged, chunks[1].size, 100.0 * chunks[1].size / len(data), chunks[1].offset)]
    # AND --strict refuses it
    assert CliRunner().invoke(main, ["--strict", "top", str(damaged)]).exit_code == 1
