"""Drive a real headless Chromium through the Snakemake report, the way a reader clicks it.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: requests
on fd 3, replies on fd 4, each a JSON message ended by a NUL byte), so nothing but the standard
library and a `chromium` binary is needed (Debian: `apt-get install -y chromium`).

    with ReportBrowser("report.html") as browser:
        browser.click_menu("1. Verdicts")
        browser.open_result("Verdicts: the answer per setup")
        text = browser.shown_text()     # innerText of the document the report shows

Also runnable by hand to look at a report at the width a reader sees it:
    python tests/report_browser.py results/report.html "1. Verdicts" "Verdicts: the answer per setup" out.png
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Flags that work on headless CI machines and in containers (no sandbox, no GPU, no network).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]
WINDOW = (1400, 1000)


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else chromium / chromium-browser / google-chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


class ReportBrowser:
    """One headless Chromium with one page showing `report` (a Snakemake HTML report)."""

    def __init__(self, report: str | Path, chromium: str | None = None, timeout: float = 60.0):
        self.report = Path(report).resolve()
        self.chromium = chromium or find_chromium()
        if self.chromium is None:
            raise BrowserError("no chromium binary (apt-get install -y chromium, or set $CHROMIUM)")
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []

    # -- process and protocol -------------------------------------------------------------

    def __enter__(self):
        self._profile = tempfile.TemporaryDirectory(prefix="kdtransfer-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes():  # in the child: the protocol's fds 3 (requests) and 4 (replies)
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._proc = subprocess.Popen(
            [
                self.chromium,
                *CHROMIUM_FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(3, 4, to_browser_r, from_browser_w),
            preexec_fn=wire_pipes,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.call("Page.enable", session=True)
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
                session=True,
            )
            self.call("Page.navigate", {"url": self.report.as_uri()}, session=True)
            self._wait_event("Page.loadEventFired")
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    err = (
                        self._proc.stderr.read().decode(errors="replace")[-2000:]
                        if self._proc.poll() is not None
                        else ""
                    )
                    raise BrowserError(f"chromium closed the DevTools pipe. {err}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        """Send one DevTools command and return its result (events arriving meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    # -- what a reader does ---------------------------------------------------------------

    def evaluate(self, expression: str, context_id: int | None = None):
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context_id is not None:
            params["contextId"] = context_id
        result = self.call("Runtime.evaluate", params, session=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"script failed: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def _click_when_present(self, finder: str, what: str) -> None:
        """Poll (the report is a React app) until `finder` (JS returning an element or null)
        finds something, then click it."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.evaluate(f"(() => {{ const el = ({finder}); if (!el) return false; el.click(); return true; }})()"):
                time.sleep(0.3)  # let React render the new view
                return
            time.sleep(0.2)
        raise BrowserError(f"{what} not found in the report")

    def click_menu(self, category: str) -> None:
        """Click a category of the report's menu ("1. Verdicts"), going back to the menu
        first (the "Results" breadcrumb) when a category is open."""
        back = "[...document.querySelectorAll('nav a')].find(a => a.textContent.trim() === 'Results')"
        if self.evaluate(f"!!({back})"):
            self._click_when_present(back, "the Results breadcrumb")
        finder = f"[...document.querySelectorAll('a')].find(a => a.textContent.trim() === {json.dumps(category)})"
        self._click_when_present(finder, f"menu item {category!r}")

    def open_result(self, label: str) -> None:
        """In the shown category, click the view button of the result labelled `label`."""
        finder = (
            f"(() => {{ const row = [...document.querySelectorAll('tr')].find(tr => tr.cells.length && "
            f"tr.cells[0].textContent.trim() === {json.dumps(label)}); return row ? row.cells[row.cells.length - "
            f"1].querySelector('a') : null; }})()"
        )
        self._click_when_present(finder, f"result {label!r}")

    def result_labels(self) -> list[str]:
        """The labels listed in the shown category, in display order."""
        return self.evaluate("[...document.querySelectorAll('tbody tr')].map(tr => tr.cells[0].textContent.trim())")

    def page_text(self) -> str:
        return self.evaluate("document.body.innerText")

    def shown_text(self, wait: float = 10.0) -> str:
        """The visible text of what the report shows: the innerText of the iframe holding an
        HTML result (tables; waited for up to `wait` seconds), else of the page itself."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            frames = self.call("Page.getFrameTree", session=True)["frameTree"].get("childFrames", [])
            if frames:
                frame = frames[-1]["frame"]["id"]
                world = self.call(
                    "Page.createIsolatedWorld", {"frameId": frame, "worldName": "kdtransfer-test"}, session=True
                )
                text = self.evaluate("document.body ? document.body.innerText : ''", world["executionContextId"])
                if text:
                    return text
            time.sleep(0.2)
        return self.page_text()

    def screenshot(self, path: str | Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))


if __name__ == "__main__":
    report, category, label, out = sys.argv[1:5]
    with ReportBrowser(report) as browser:
        browser.click_menu(category)
        print("results:", browser.result_labels())
        browser.open_result(label)
        print(browser.shown_text()[:3000])
        browser.screenshot(out)
