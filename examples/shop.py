"""A small program to record in the example notebook: a shop that prices orders, compresses
its log and waits for deliveries, each in its own thread.

    python shop.py [SECONDS=2] [--slow-pricing]

- ``MainThread`` prices orders (``price_order``) and formats receipts (``render_receipt``);
- ``compressor`` compresses log blocks with zlib (``compress_logs``), mostly inside C code;
- ``deliveries`` waits on a timer (``wait_for_delivery``), so it shows as idle.

``--slow-pricing`` makes ``price_order`` do five times the work: the change the notebook's
diff finds.
"""

import sys
import threading
import time
import zlib

SLOW = "--slow-pricing" in sys.argv
ROUNDS = 5 if SLOW else 1


def price_order(items):
    total = 0.0
    for _ in range(ROUNDS):
        for i in range(items):
            total += (i % 7) * 1.07 + (i % 3) * 0.5
    return total


def render_receipt(total, items):
    lines = ["item %d: %.2f" % (i, total / items) for i in range(items)]
    return "\n".join(lines)


def serve(deadline):
    while time.monotonic() < deadline:
        render_receipt(price_order(600), 200)


def compress_logs(deadline):
    block = b"2024-01-01 GET /orders 200 " * 20_000
    while time.monotonic() < deadline:
        zlib.compress(block, 6)
        time.sleep(0.002)


def wait_for_delivery(deadline):
    while time.monotonic() < deadline:
        time.sleep(0.05)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    deadline = time.monotonic() + (float(args[0]) if args else 2.0)
    workers = [threading.Thread(target=compress_logs, args=(deadline,), name="compressor"),
               threading.Thread(target=wait_for_delivery, args=(deadline,), name="deliveries")]
    for worker in workers:
        worker.start()
    serve(deadline)
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
