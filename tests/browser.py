"""Headless Chromium for the page tests, driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: NUL-terminated JSON messages, commands on the browser's fd 3,
replies and events on its fd 4), so a real browser runs the pages with nothing beyond the
standard library.

A page opened here records what a user's console would show (exceptions, console errors, the
browser's own error log) and every request it makes, so a test can ask that it raised nothing
and loaded nothing.
"""

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from typing import Any, Dict, List, Optional

#: Debian's package; the others are the names other distributions give it.
EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")
#: As root Chromium needs --no-sandbox; the rest keep it from reaching for the network
#: (updates, sync, safe browsing) on a machine that has none.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--window-size=1200,800", "--remote-debugging-pipe"]
TIMEOUT_S = 30.0


def executable() -> Optional[str]:
    for name in EXECUTABLES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium; ``open(url)`` gives a Page in a new tab."""

    def __init__(self, path: str, profile: str):
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        # Above fd 4 first, so wiring them to 3 and 4 in the child cannot clobber either.
        high_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        high_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 10)

        def wire():
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen(
            [path, *FLAGS, "--user-data-dir=" + profile, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire)
        for fd in (to_browser, from_browser, high_in, high_out):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: List[Dict[str, Any]] = []

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None) -> dict:
        self._next_id += 1
        message: Dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, since: int = 0) -> dict:
        """The first event ``method`` of ``session`` from ``events[since]`` on, waiting for it."""
        seen = since
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self.events.append(self._receive(deadline))

    def _receive(self, deadline: Optional[float] = None) -> dict:
        deadline = deadline or time.monotonic() + TIMEOUT_S
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("Chromium said nothing for %.0f s" % TIMEOUT_S)
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium exited (status %s)" % self.process.poll())
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> "Page":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(domain + ".enable", session=session)
        start = len(self.events)
        self.call("Page.navigate", {"url": url}, session)
        # Events may come before the reply, and about:blank's load may come late: the page's
        # load is the first after its frame navigated to it.
        navigated = start
        while True:
            event = self.wait_for("Page.frameNavigated", session, navigated)
            navigated = self.events.index(event) + 1
            if event["params"]["frame"]["url"].split("#")[0] == url.split("#")[0]:
                break
        self.wait_for("Page.loadEventFired", session, navigated)
        return Page(self, session, start)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


class Page:
    def __init__(self, browser: Browser, session: str, first_event: int):
        self.browser = browser
        self.session = session
        self._first_event = first_event

    def call(self, method: str, params: Optional[dict] = None) -> dict:
        return self.browser.call(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        """The expression's value (JSON-able), or the page's exception raised as RuntimeError."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def type(self, selector: str, text: str) -> None:
        """Focus the element and type into it, as a user does (input events fire)."""
        self.evaluate("document.querySelector(%s).focus()" % json.dumps(selector))
        self.call("Input.insertText", {"text": text})

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent",
                      {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def _events(self, method: str) -> List[dict]:
        return [event["params"] for event in self.browser.events[self._first_event:]
                if event.get("sessionId") == self.session and event.get("method") == method]

    def errors(self) -> List[str]:
        """What a user's console would show as errors: exceptions, console.error, the log's."""
        found = [str(e["exceptionDetails"].get("exception", {}).get("description")
                     or e["exceptionDetails"].get("text"))
                 for e in self._events("Runtime.exceptionThrown")]
        found += [str(e["args"]) for e in self._events("Runtime.consoleAPICalled")
                  if e["type"] in ("error", "assert")]
        found += [e["entry"]["text"] for e in self._events("Log.entryAdded")
                  if e["entry"]["level"] == "error"]
        return found

    def requests(self) -> List[str]:
        """Every URL the page asked for, its own included."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]
