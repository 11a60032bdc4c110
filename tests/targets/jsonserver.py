"""An asyncio JSON service and its clients in one process.  Plain Python, runs on 3.8+.

Usage: ``python jsonserver.py [DURATION=30]``.

The ready line (see _truth.py) comes before asyncio is imported: a recorder attached then finds
the tasks once the program starts them.  Then an HTTP/1.0 server (asyncio streams) answers 40
client tasks named ``client-N``, each request in a task of its own running ``handle``, which
builds a JSON document with ``json.dumps(..., indent=1)``: generators consumed from C, inside a
short-lived task.
"""

import hashlib
import json
import time

from _truth import duration_arg, ready

DURATION = duration_arg()


async def handle(reader, writer):
    line = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    n = int(line.split()[1].strip(b"/") or 1)
    doc = {"items": [{"id": i, "sha": hashlib.sha256(str(i).encode()).hexdigest()}
                     for i in range(n)]}
    body = json.dumps(doc, indent=1).encode()
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    writer.close()


async def client(port, until):
    import asyncio
    while time.monotonic() < until:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /200 HTTP/1.0\r\n\r\n")
        await writer.drain()
        data = await reader.read()
        json.loads(data.split(b"\r\n\r\n", 1)[1])
        writer.close()


async def main():
    import asyncio
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    until = time.monotonic() + DURATION
    await asyncio.gather(*(asyncio.create_task(client(port, until), name="client-%d" % i)
                           for i in range(40)))
    server.close()


ready()
time.sleep(0.3)  # the recorder attaches before asyncio is imported
import asyncio  # noqa: E402

asyncio.run(main())
