"""Write the golden .spy files and their text dumps.

Run only when the format changes on purpose (a new minor version adds new golden files; the
old ones stay, so that old recordings keep being read):

    python formats/golden/make_golden.py

The tests never create a missing golden file: they fail instead.
"""

import io
import os
import struct

from spyrec import spyformat
from spyrec.spyformat import SampleFlag, SpyWriter

HERE = os.path.dirname(os.path.abspath(__file__))


def small_recording(with_trailer=True, unknown_kind=False):
    """Two threads of one process, unicode names, a recursion, and every sample column."""
    out = io.BytesIO()
    writer = SpyWriter(out)
    writer.write_header({
        "recorder": "spyrec 0.1.0", "start_wall_ns": 1_764_000_000_000_000_000,
        "start_mono_ns": 5_000_000_000, "interval_ns": 10_000_000, "host": "golden",
        "pid": 4242, "argv": ["python3", "app.py"], "cwd": "/srv/app",
        "python_version": "3.12.1", "python_executable": "/usr/bin/python3.12", "mode": "launch",
    })
    writer.process(pid=4242, argv=["python3", "app.py"], python_version="3.12.1",
                   executable="/usr/bin/python3.12", start_ns=0)
    writer.thread(pid=4242, tid=4242, py_thread_id=140000000000001, name="MainThread", start_ns=0)
    writer.thread(pid=4242, tid=4243, py_thread_id=140000000000002, name="wörker-関", start_ns=0)
    main = writer.frame_id("/srv/app/app.py", "<module>", "<module>", 30, 0)
    run = writer.frame_id("/srv/app/app.py", "run", "Server.run", 12, 8)
    fib = writer.frame_id("/srv/app/app.py", "fib", "fib", 5, 15)
    cafe = writer.frame_id("/srv/app/café.py", "calcül", "calcül", 70001, -1)
    stack_main = writer.stack_id((main, run))
    stack_fib = writer.stack_id((main, fib, fib, fib))
    stack_worker = writer.stack_id((cafe,))
    rss = 20_000_000
    for i in range(6):
        t = i * 10_000_000
        writer.sample(t, 4242, 4242, stack_main if i % 2 else stack_fib, 9_000_000, rss + i * 4096,
                      SampleFlag.GIL)
        writer.sample(t + 50_000, 4242, 4243, stack_worker, 0, rss + i * 4096, SampleFlag.IDLE)
    writer.flush()
    if unknown_kind:
        out.write(spyformat.encode_chunk(200, {"future": "a kind this reader does not know"}))
    writer.thread(pid=4242, tid=4243, end_ns=60_000_000)
    writer.sample(60_000_000, 4242, 4242, stack_main, 10_000_000, rss, SampleFlag.GIL)
    if with_trailer:
        writer.close({"end_ns": 70_000_000, "duration_ns": 70_000_000, "ticks": 7, "samples": 13,
                      "errors": 0, "late": 0, "sampling_cost_ns": [20_000, 30_000, 50_000],
                      "stop_reason": "target exited"})
    else:
        writer.flush()
    return out.getvalue()


def write(path, data):
    with open(os.path.join(HERE, path), "wb") as f:
        f.write(data)
    if path.startswith("v1/"):
        with open(os.path.join(HERE, path[:-4] + ".dump.txt"), "w", encoding="utf-8") as text:
            spyformat.dump(io.BytesIO(data), text)


def main():
    complete = small_recording()
    write("v1/complete.spy", complete)
    write("v1/no-trailer.spy", small_recording(with_trailer=False))
    write("v1/unknown-kind.spy", small_recording(unknown_kind=True))
    write("v1/torn-tail.spy", complete[:-7])
    write("invalid/bad-magic.spy", b"\x89SPX" + complete[4:])
    write("invalid/newer-major.spy", complete[:8] + bytes([2]) + complete[9:])
    flipped = bytearray(complete)
    flipped[200] ^= 0x40
    write("invalid/bad-checksum.spy", bytes(flipped))
    huge = bytearray(complete)
    struct.pack_into("<I", huge, spyformat.PREAMBLE.size, 0xFFFFFFF0)
    write("invalid/huge-length.spy", bytes(huge))
    write("invalid/not-a-recording.spy", b"this is a text file, not a recording\n")
    write("invalid/empty.spy", b"")


if __name__ == "__main__":
    main()
