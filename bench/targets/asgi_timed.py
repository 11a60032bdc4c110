"""A FastAPI app under uvicorn, loaded by a client process on the same machine, timing its
own parts.

    python asgi_timed.py SECONDS

``serve`` runs the server while a client (another process, plain ``http.client`` on one
connection) asks for ``/item/K`` over and over for SECONDS; each request computes a sum over a
generator (``compute``) and returns rows that FastAPI encodes.  The server's main thread is
asleep between requests, waiting for the next one.  At exit it prints to stderr, as JSON, the
share of ``serve``'s wall time spent in ``compute`` and in the endpoint ``item``, measured with
``time.perf_counter``: a profiler's share of its samples of the main thread, those asleep
included, in the same functions should match.  With ``ASGI_TIMED_LOG=PATH`` it also writes
to PATH, as JSON, the start and end (``time.monotonic_ns``) of every ``compute`` call, so that
each sample's moment can be looked up in them (bench/bench_self_timed.py ``--moments``).
"""

import asyncio
import json
import os
import sys
import time

import uvicorn
from fastapi import FastAPI

PORT = 8765
CLIENT = """
import http.client, sys, time
end = time.monotonic() + float(sys.argv[1])
connection = http.client.HTTPConnection("127.0.0.1", %d)
k = 0
while time.monotonic() < end:
    connection.request("GET", "/item/%%d" %% k)
    connection.getresponse().read()
    k += 1
""" % PORT

app = FastAPI()
spent = {"compute": 0.0, "item": 0.0}
LOG = os.environ.get("ASGI_TIMED_LOG")
calls = []  # (start, end) of each compute call, monotonic ns, when LOG is set


def compute(n):
    began = time.monotonic_ns() if LOG else 0
    start = time.perf_counter()
    total = sum(i * i for i in range(n))
    spent["compute"] += time.perf_counter() - start
    if LOG:
        calls.append((began, time.monotonic_ns()))
    return total


@app.get("/item/{k}")
async def item(k: int):
    start = time.perf_counter()
    body = {"k": k, "v": compute(3000 + k % 100),
            "rows": [{"i": i, "s": str(i) * 3} for i in range(50)]}
    spent["item"] += time.perf_counter() - start
    return body


async def load(seconds):
    config = uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="error",
                            access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    client = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, str(seconds))
    await client.wait()
    server.should_exit = True
    await task


def serve(seconds):
    asyncio.run(load(seconds))


def main():
    start = time.perf_counter()
    serve(float(sys.argv[1]))
    total = time.perf_counter() - start
    if LOG:
        with open(LOG, "w") as f:
            json.dump(calls, f)
    print(json.dumps({key: value / total for key, value in spent.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
