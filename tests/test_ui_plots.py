"""The Prefect UI shows the plots: a real server with its UI, the summary artifact pec
publishes, and a headless Chromium that opens the artifact page like a user would.

Needs a `chromium` on PATH or in $PEC_CHROMIUM (Debian's is installed when missing and this
runs as root, like the Docker engine of tests/support/docker_engine.py); the browser is driven through the DevTools protocol to count the images it actually decoded,
and the page is saved as a screenshot next to the test's files.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_flow_deployment import PREFECT, free_port, start_logged, stop, wait_healthy

from flows.artifacts import summary_markdown
from pec.presentation.cli import main as pec_main
from pec.runs import layout
from pec.runs.state_io import load_state
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")

pytestmark = pytest.mark.slow


def _find_chromium() -> str | None:
    found = os.environ.get("PEC_CHROMIUM") or shutil.which("chromium")
    return found or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium_binary() -> str:
    """Debian's chromium, installed when missing (as tests/support/docker_engine does)."""
    found = _find_chromium()
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("no chromium on PATH and not root: apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "chromium"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"apt-get install chromium failed:\n{done.stderr[-2000:]}")
    found = _find_chromium()
    if not found:
        pytest.fail("chromium installed but not on PATH; set PEC_CHROMIUM")
    return found


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    home = tmp_path_factory.mktemp("prefect-ui-home")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"{base}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_PROFILE", None)
    server = start_logged(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        home / "server.log",
    )
    try:
        wait_healthy(f"{base}/api", server, timeout=120)
        yield base, env
    finally:
        stop(server, signals=1, grace=30)


PUBLISH = """
import sys
from prefect.artifacts import create_markdown_artifact
artifact_id = create_markdown_artifact(open(sys.argv[1]).read(), key="pec-ui-summary")
print(artifact_id)
"""


class DevTools:
    """The few Chrome DevTools protocol calls the test needs, over one websocket."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.socket = connect(url, max_size=64 * 2**20)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    port = free_port()
    process = subprocess.Popen(
        [
            chromium_binary(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--remote-debugging-port={port}",
            "--window-size=1400,2400",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        pages: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not pages:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json", timeout=2).json()
                pages = [t for t in targets if t.get("type") == "page"]
            except httpx.HTTPError:
                time.sleep(0.3)
        assert pages, "chromium's DevTools endpoint did not come up"
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        yield tools
        tools.socket.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def test_summary_artifact_shows_the_plots_in_a_browser(
    ui_server: tuple[str, dict[str, str]], browser: DevTools, tmp_path: Path
) -> None:
    base, env = ui_server
    # a real run's plots: init draws the initial Gaussians
    root = tmp_path / "store"
    assert pec_main(["init", "--run_name", "ui", "--store", str(root), "--config", TINY]) == 0
    store = LocalStore(root)
    loaded = load_state(store, "ui")
    assert loaded is not None
    plots = [layout.initial_plot_key("ui")]
    pngs = [(key, store.read_bytes(key)) for key in plots]
    markdown = summary_markdown(loaded[0], 0, None, 0.95, None, pngs, {})
    source = tmp_path / "summary.md"
    source.write_text(markdown)
    done = subprocess.run(
        [sys.executable, "-c", PUBLISH, str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    artifact_id = done.stdout.strip().splitlines()[-1]

    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{base}/artifacts/artifact/{artifact_id}")
    count_loaded = (
        "Array.from(document.images).filter(i => i.src.startsWith('data:image/png') "
        "&& i.complete && i.naturalWidth > 100).length"
    )
    deadline = time.monotonic() + 90
    loaded_images = 0
    while time.monotonic() < deadline:
        loaded_images = int(browser.evaluate(count_loaded) or 0)
        if loaded_images >= len(plots):
            break
        time.sleep(0.5)
    text = str(browser.evaluate("document.body ? document.body.innerText : ''"))
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    screenshot = tmp_path / "artifact-page.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot of the artifact page: {screenshot}")
    assert loaded_images == len(plots), (
        f"{loaded_images} plot image(s) decoded in the page; page text:\n{text[:2000]}"
    )
    assert "PEC run" in text and layout.initial_plot_key("ui") in text
    # the image is drawn at a visible size, not collapsed
    width = browser.evaluate(
        "Math.max(...Array.from(document.images).filter(i => i.src.startsWith('data:'))"
        ".map(i => i.getBoundingClientRect().width))"
    )
    assert float(width) > 200
