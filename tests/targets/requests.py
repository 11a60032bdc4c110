"""A server with one thread per request, as ``socketserver.ThreadingTCPServer`` makes them.

Usage: ``python requests.py DURATION LOG``.

Two client threads send requests one after another for DURATION seconds; the server starts a
thread for each (its default ``threading`` name), which naps and works about 20 ms at @handle
and ends.  Each request thread appends ``<native id> <name>`` to LOG (line-buffered) as it starts,
the ground truth for the names a recorder must find.  The ready line (see _truth.py) has
``main`` and ``port``; the target exits on its own after DURATION.
"""

import socket
import socketserver
import sys
import threading
import time

from _truth import duration_arg, native_id, ready, thread_record

DURATION = duration_arg()
LOG = open(sys.argv[2], "a", buffering=1)
LOCK = threading.Lock()
CLIENTS = 2


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        with LOCK:
            LOG.write("%d %s\n" % (native_id(), threading.current_thread().name))
        self.request.recv(16)
        time.sleep(0.018)
        end = time.time() + 0.002
        while time.time() < end: pass  # @handle
        self.request.sendall(b"ok")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True


def client(port, deadline):
    while time.time() < deadline:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"go")
            conn.recv(16)


server = Server(("127.0.0.1", 0), Handler)
port = server.server_address[1]
threading.Thread(target=server.serve_forever, name="acceptor", daemon=True).start()
ready(main=thread_record(), port=port)
deadline = time.time() + DURATION
clients = [threading.Thread(target=client, args=(port, deadline), name="client-%d" % n)
           for n in range(CLIENTS)]
for thread in clients:
    thread.start()
for thread in clients:
    thread.join()
server.shutdown()
LOG.close()
