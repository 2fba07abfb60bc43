"""Headless Chromium driven over the DevTools protocol: type into forms, click, screenshot, read the page."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

from tests.servers import free_port

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-dev-shm-usage", "--remote-allow-origins=*", "--window-size=1440,1000"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, profile: Path):
        port = free_port()
        self.proc = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                      f"--remote-debugging-port={port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    page = next(t for t in json.load(r) if t["type"] == "page")
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30))
        self.ids = itertools.count(1)
        self.send("Page.enable")

    def send(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self._poll(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {expression!r}; url {self.js('location.href')}, "
                                   f"text {str(self.text())[:500]!r}")
            time.sleep(0.5)

    def _poll(self, expression: str):
        """One evaluation while waiting; a page that is navigating (after a login) is "not yet"."""
        try:
            return self.js(expression)
        except RuntimeError as exc:
            if "navigated or closed" in str(exc) or "Cannot find context" in str(exc):
                return None
            raise

    def type_into(self, selector: str, value: str) -> None:
        """Set a (React-controlled) input as typing would: the native setter, then an input event."""
        self.js(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
            set.call(el, {json.dumps(value)}); el.dispatchEvent(new Event('input', {{bubbles: true}})); }})()""")

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            self.proc.wait(20)


ARTIFACTS = Path(os.environ.get("BATCHML_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


def check_reports(pages: dict[Path, list[str]], profile: Path) -> list[Path]:
    """Render self-contained report pages in headless Chromium as people see them, each to a full-page PNG under
    ``tests/artifacts/``: the picture is not blank, the page holds every expected section, and no chart runs off
    the page or is empty. Skips when Chromium is missing (``make test`` installs it)."""
    import pytest

    if chromium() is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`; `make test` installs it as root)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser = Browser(profile)
    try:
        return [_check_page(browser, page, sections) for page, sections in pages.items()]
    finally:
        browser.close()


def _check_page(browser: Browser, page: Path, sections: list[str]) -> Path:
    from PIL import Image, ImageStat

    browser.goto(page.resolve().as_uri())
    browser.wait_for(f"document.readyState === 'complete' && location.href === {json.dumps(page.resolve().as_uri())}")
    text = browser.text()
    charts = browser.js("[...document.querySelectorAll('svg')].map(s => { const r = s.getBoundingClientRect();"
                        " return [r.width, r.height, r.right, s.querySelectorAll('rect,polyline,circle').length]; })")
    width = browser.js("document.documentElement.scrollWidth")
    png = browser.screenshot(ARTIFACTS / f"report_{page.parent.name}_{page.stem}.png", full_page=True)
    missing = [s for s in sections if s not in text]
    assert not missing, f"{page}: sections missing from the rendered page: {missing}"
    assert all(w > 0 and h > 0 and right <= width + 1 and marks > 0 for w, h, right, marks in charts), (page, charts)
    image = Image.open(png).convert("L")
    spread = ImageStat.Stat(image).stddev[0]
    dark = sum(image.histogram()[:200]) / (image.width * image.height)
    assert spread > 10 and dark > 0.01, f"{png} looks blank (stddev {spread:.1f}, {dark:.1%} non-white pixels)"
    return png
