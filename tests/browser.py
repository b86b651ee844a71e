"""Open a page in Debian's headless Chromium through Playwright (no browser download:
the system's /usr/bin/chromium). A machine without it skips the test with the reason;
under CI=true that is a failure instead (.ci/run installs chromium)."""
import importlib.util
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# the flags that keep a headless Chromium off the network (this machine's is closed)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def need_chromium():
    reason = None
    if not CHROMIUM:
        reason = "chromium not installed (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        reason = "playwright not installed (pip install -r requirements-dev.txt)"
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}, and CI=true: the browser test must run in CI")
        pytest.skip(reason)


@contextmanager
def open_page(path: Path, width: int = 1280):
    """Yields (page, errors): errors collects console errors and uncaught exceptions."""
    need_chromium()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(Path(path).resolve().as_uri())
            page.wait_for_load_state("load")
            page.requests = requests
            yield page, errors
        finally:
            browser.close()
