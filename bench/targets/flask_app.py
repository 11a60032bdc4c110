"""A threaded Flask app under load: werkzeug's server with ``threaded=True`` (a thread per
request) renders a Jinja template (``/page``) or JSON (``/api``) for four client threads of
another process, for SECONDS, then prints ``{"requests": n}`` (requests served) and exits.
Needs Flask in the interpreter that runs it (not a
dependency of spyrec): ``python -m venv /tmp/webapp && /tmp/webapp/bin/pip install flask``.

Usage: ``python flask_app.py [SECONDS=10]``.
"""

import itertools
import json
import logging
import subprocess
import sys
import threading

from flask import Flask, jsonify, render_template_string
from werkzeug.serving import make_server

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 10
app = Flask(__name__)
PAGE = """<ul>{% for row in rows %}<li>{{ row.name }}: {{ row.value|round(2) }}
{% for t in row.tags %}<b>{{ t|upper }}</b>{% endfor %}</li>{% endfor %}</ul>"""

#: The clients: four threads requesting pages and JSON one after another until the end.
LOAD = r'''
import sys, threading, time, urllib.request
end = time.time() + float(sys.argv[1])
def worker(path):
    while time.time() < end:
        try: urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[2], path)).read()
        except Exception: time.sleep(0.01)
ts = [threading.Thread(target=worker, args=(p,)) for p in ("/page", "/api", "/page", "/api")]
[t.start() for t in ts]; [t.join() for t in ts]
'''


def rows(n):
    return [{"name": "item%d" % i, "value": i * 1.5, "tags": ["a%d" % (i % 7), "b", "c"]}
            for i in range(n)]


served = itertools.count()  # next() on it is atomic under the GIL


@app.after_request
def count(response):
    next(served)
    return response


@app.route("/page")
def page():
    return render_template_string(PAGE, rows=rows(200))


@app.route("/api")
def api():
    return jsonify(json.loads(json.dumps({"rows": rows(300)})))


def main():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    load = subprocess.Popen([sys.executable, "-c", LOAD, str(SECONDS), str(server.server_port)])
    threading.Thread(target=lambda: (load.wait(), server.shutdown()), daemon=True).start()
    server.serve_forever()
    print(json.dumps({"requests": next(served)}), flush=True)


if __name__ == "__main__":
    main()
