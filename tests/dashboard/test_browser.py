"""The dashboard as a user sees it: `discovery dashboard` on a real campaign, opened in headless Chromium.

Uses Debian's /usr/bin/chromium (`apt-get install chromium`, done by .ci/run) driven by Playwright;
Playwright's own browser downloads are never used. Without Chromium these tests fail, unless
DISCOVERY_SKIP_BROWSER=1 is set, when they are skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.dashboard import wait_until_ready

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# No sandbox (root, containers), software rendering, and nothing that reaches the network by itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
CHART = '[data-testid="stVegaLiteChart"]'
EXCEPTION = '[data-testid="stException"]'
TIMEOUT_MS = 120_000  # generous: CI shares two cores with other work


def _require_browser() -> None:
    skip = os.environ.get("DISCOVERY_SKIP_BROWSER") == "1"
    problem = None
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing: install it with `apt-get install chromium` (as .ci/run does)"
    elif importlib.util.find_spec("playwright") is None:
        problem = "playwright is not installed: `pip install -c constraints.txt -e '.[dev]'`"
    if problem is None:
        return
    if skip:
        pytest.skip(f"DISCOVERY_SKIP_BROWSER=1 and {problem}")
    pytest.fail(f"{problem}; set DISCOVERY_SKIP_BROWSER=1 to skip the browser tests", pytrace=False)


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)  # fresh temp profile
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="light")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def campaign_db(browse_db):
    """The session's real campaigns database (tests/dashboard/conftest.py): (path, campaign id)."""
    from db.engine import dispose_engines

    dispose_engines()  # the dashboard alone has the file open, as after a `discovery run`
    return browse_db.path, browse_db.simpletes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _dashboard(db: Path, log: Path):
    """`discovery dashboard --db sqlite:///DB --port P` in its own process group; yields (base url, process)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "DISCOVERY_DB_URL")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "dashboard", "--db", f"sqlite:///{db}", "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_ready(base, 180, process=proc), f"dashboard did not start:\n{log.read_text()}"
        yield base, proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stop(proc: subprocess.Popen, log: Path) -> None:
    """Ctrl-C to the whole process group, as a terminal sends it; the launcher and streamlit must both exit."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the dashboard did not stop on Ctrl-C:\n{log.read_text()}")
    assert code == 0, f"dashboard exited with {code}:\n{log.read_text()}"
    for _ in range(100):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"processes of the dashboard's group {proc.pid} outlived it")


def _pixel_stats(png: bytes) -> dict[str, float]:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    total = image.width * image.height
    colours = image.getcolors(maxcolors=total) or []
    return {
        "pixels": total,
        "distinct": len(colours),
        "non_white": sum(n for n, (r, g, b) in colours if min(r, g, b) < 235) / max(total, 1),
        # a data mark: a saturated pixel (axes, grid and text are grey)
        "coloured": sum(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) >= 60),
    }


def _painted(stats: dict[str, float]) -> bool:
    return stats["distinct"] >= 16 and stats["non_white"] >= 0.005 and stats["coloured"] >= 50


def _body_contains(page, text: str) -> None:
    page.wait_for_function("t => document.body && document.body.innerText.includes(t)", arg=text,
                           timeout=TIMEOUT_MS)


def test_campaign_page_draws_the_score_chart(campaign_db, page, tmp_path):
    db, campaign_id = campaign_db
    log = tmp_path / "dashboard.log"
    with _dashboard(db, log) as (base, proc):
        page.goto(f"{base}/campaign?campaign={campaign_id}")
        chart = page.wait_for_selector(CHART, state="visible")
        page.wait_for_selector(f"{CHART} canvas, {CHART} svg", state="attached")
        _body_contains(page, "erdos_min_overlap")

        # Vega paints after the element appears: wait until the chart's pixels are drawn.
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            png = chart.screenshot()
            stats = _pixel_stats(png)
            if _painted(stats) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        (tmp_path / "chart.png").write_bytes(png)
        page.screenshot(path=str(tmp_path / "campaign.png"), full_page=True)

        assert page.locator(CHART).count() >= 1
        assert page.locator(f"{CHART} canvas, {CHART} svg").count() >= 1
        assert "erdos_min_overlap" in page.inner_text("body")
        assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()
        assert stats["distinct"] >= 16, f"chart looks blank: {stats} (see {tmp_path / 'chart.png'})"
        assert stats["non_white"] >= 0.005, f"chart looks blank: {stats} (see {tmp_path / 'chart.png'})"
        assert stats["coloured"] >= 50, f"no coloured data mark in the chart: {stats} (see {tmp_path / 'chart.png'})"
        _stop(proc, log)


def test_missing_database_shows_how_to_run_a_first_campaign_and_creates_nothing(page, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    db = folder / "missing.db"
    log = tmp_path / "dashboard.log"
    with _dashboard(db, log) as (base, proc):
        page.goto(f"{base}/")
        _body_contains(page, "discovery run")
        page.screenshot(path=str(tmp_path / "first-run.png"), full_page=True)
        assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()
        _stop(proc, log)
    assert not db.exists()
    assert sorted(os.listdir(folder)) == [], "the dashboard created files next to the missing database"
