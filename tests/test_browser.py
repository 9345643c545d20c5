"""The marimo apps in a real browser: `hortus app` with token auth, driven by Playwright.

Each app is served by `hortus app NAME` (`marimo run` on 127.0.0.1 with a token) over a
small temporary project, then Debian's chromium (/usr/bin/chromium, installed by `make
browser`) opens it headless with the token, waits for the altair charts to render,
changes one UI control and checks the output follows.  The browser reaches nothing but
127.0.0.1: every other request is aborted and recorded, and the test fails on any.
Screenshots go to reports/screenshots/ (git-ignored test artifacts).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

import test_monitor_notebook as monitor_notebook
from hortus.cli.app import APP_USERS, TOKEN_ENV, app_token, app_url, app_user, marimo_command
from hortus.config import Paths
from hortus.errors import HortusError
from hortus.project.definition import Project

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "reports" / "screenshots"
HORTUS = Path(sys.executable).with_name("hortus")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: a rendered altair chart: vega-embed draws its marks on a <canvas> (or an <svg>) of
#: class "marks" (marimo puts it in the shadow DOM of its mime renderer; locators pierce it)
CHART = ".vega-embed .marks"
SERVER_START_S = 60
RENDER_MS = 90_000

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Debian's chromium is not installed at {CHROMIUM}: run `make browser`",
)

# a project with monitor metrics, an ok and a failed run, KPIs of ALL/DACH/UKI, a
# training set that drifts, and a denied read (the fixture of the notebook's own tests)
populated = monitor_notebook.populated


# ------------------------------------------------------------------ the server
@dataclass
class App:
    """A running `hortus app` server: its port, token and log."""

    name: str
    port: int
    token: str
    log: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def url(self) -> str:
        """Return the URL that logs in with the token."""
        return app_url(self.port, self.token)

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of the server's output."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, cookie: str | None = None) -> tuple[int, dict[str, str], str]:
    """GET `url` without following redirects; return status, headers and body."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=20) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:  # 3xx (not followed) and 4xx land here
        return exc.code, dict(exc.headers), exc.read().decode("utf-8", "replace")


@contextmanager
def serve(root: Path, name: str, user: str) -> Iterator[App]:
    """Run `hortus app NAME` over the project at `root` until the block ends."""
    notebooks = root / "notebooks"
    notebooks.mkdir(exist_ok=True)
    shutil.copy(REPO / "notebooks" / f"{name}.py", notebooks / f"{name}.py")
    port, token = _free_port(), f"test-{secrets.token_urlsafe(16)}"
    log = root / f"{name}-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(HORTUS), "--root", str(root), "app", name, "--port", str(port), "--user", user],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
            env=os.environ | {TOKEN_ENV: token, "MARIMO_SKIP_UPDATE_CHECK": "1"},
        )
    app = App(name=name, port=port, token=token, log=log, process=process)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            assert process.poll() is None, f"hortus app {name} exited:\n{app.log_tail()}"
            assert time.monotonic() < deadline, (
                f"no server after {SERVER_START_S}s:\n{app.log_tail()}"
            )
            try:
                if _get(f"http://127.0.0.1:{port}/health")[0] == 200:
                    break
            except OSError:  # not listening yet
                pass
            time.sleep(0.3)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


# ------------------------------------------------------------------ the browser
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Return Debian's chromium, headless, driven by Playwright (no downloaded browser)."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def open_app(browser: Browser, app: App) -> Iterator[Page]:
    """Open the app with its token in a fresh context that may reach only 127.0.0.1.

    On leaving, fail if the page tried to fetch anything from elsewhere or raised an
    uncaught JavaScript error.
    """
    external: list[str] = []
    errors: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.route("**/*", local_only)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(app.url, wait_until="domcontentloaded")
        yield page
        assert not external, f"the app tried to reach outside 127.0.0.1: {external}"
        assert not errors, f"JavaScript errors in {app.name}: {errors}"
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot of the whole app under reports/screenshots/ and return its path.

    marimo scrolls inside its #App element, not the page, so the viewport is first
    stretched to the app's height (full_page alone would stop at the first screen).
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = page.locator("#App").evaluate("e => e.scrollHeight")
    page.set_viewport_size({"width": 1280, "height": min(max(height, 900), 8000)})
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def cell(page: Page, heading: str | re.Pattern):
    """Return the locator of the marimo cell whose output has this level-2 heading."""
    return page.locator(".marimo-cell").filter(
        has=page.get_by_role("heading", name=heading, exact=isinstance(heading, str), level=2)
    )


def wait_for_app(page: Page, app: App, last_heading: str) -> None:
    """Wait for the last section and every chart to be drawn; fail if a cell raised.

    `marimo run` shows no output for a cell that raised; the server logs its traceback.
    """
    expect(cell(page, last_heading)).to_be_visible(timeout=RENDER_MS)
    assert "Traceback" not in app.log_tail(10**6), f"a cell raised:\n{app.log_tail()}"
    charts = page.locator(CHART)
    for i in range(charts.count()):
        charts.nth(i).wait_for(state="visible", timeout=RENDER_MS)


def wait_changed(chart, before: str, timeout_s: float = RENDER_MS / 1000) -> str:
    """Wait until the chart's pixels (or SVG) differ from `before`; return the new ones."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if chart.count() == 1:
            now = chart.evaluate("c => c.toDataURL ? c.toDataURL() : c.outerHTML")
            if now != before:
                return now
        time.sleep(0.25)
    raise AssertionError(f"the chart did not change within {timeout_s:.0f}s")


def assert_refused_without_token(app: App, title: str) -> None:
    """Check that the app's page needs the token: no token or a wrong one gets a login page."""
    base = f"http://127.0.0.1:{app.port}"
    for url in (f"{base}/", f"{base}/?access_token=wrong-{app.token}"):
        status, headers, body = _get(url)
        assert status in (303, 307, 401, 403), (url, status)
        if status in (303, 307):
            assert urlsplit(headers["location"]).path == "/auth/login", headers["location"]
            status, _, body = _get(base + headers["location"])
        assert title not in body, f"{url} served the app without the token"
        assert "Access Token / Password" in body or status in (401, 403)
    # the notebook's API is closed too
    assert _get(f"{base}/api/status")[0] in (401, 403)
    # the same page with the token logs in and is served: the check above is not vacuous
    status, headers, _ = _get(app.url)
    assert status == 303, status
    cookie = headers["set-cookie"].split(";", 1)[0]
    status, _, body = _get(f"{base}/", cookie=cookie)
    assert status == 200 and title in body


# ----------------------------------------------------------------------- tests
def test_app_token_comes_from_env_else_a_private_file(tmp_path, monkeypatch):
    """Check that the token is HORTUS_APP_TOKEN, else a 0600 file made once and reused."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token, source = app_token(tmp_path / "secrets")
    assert source == "new" and len(token) >= 40
    path = tmp_path / "secrets" / "app_token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert app_token(tmp_path / "secrets") == (token, "file")
    monkeypatch.setenv(TOKEN_ENV, "from-the-env")
    assert app_token(tmp_path / "secrets") == ("from-the-env", "env")
    monkeypatch.delenv(TOKEN_ENV)
    path.write_text("\n")
    with pytest.raises(HortusError, match="app token file .* is empty"):
        app_token(tmp_path / "secrets")


def test_app_command_keeps_the_token_off_the_command_line(monkeypatch):
    """Check that marimo gets --token and reads the password on stdin, never in argv."""
    cmd = marimo_command(Path("marimo"), Path("nb.py"), port=4321)
    assert cmd[:3] == ["marimo", "run", "nb.py"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--token" in cmd and cmd[cmd.index("--token-password-file") + 1] == "-"
    assert "--token-password" not in cmd and "--no-token" not in cmd
    assert marimo_command(Path("marimo"), Path("nb.py"), port=1, edit=True)[1] == "edit"
    monkeypatch.delenv("HORTUS_USER")
    assert app_user("monitor") == APP_USERS["monitor"] == "mia"
    assert app_user("monitor", "alex") == "alex"
    with pytest.raises(HortusError, match="no default user"):
        app_user("scratch")


@pytest.mark.integration
@needs_chromium
def test_monitor_app_needs_the_token_renders_charts_and_follows_the_segment(
    populated: Paths, browser: Browser
):
    """Check the monitor app: refused without token; charts render; the segment changes them."""
    with serve(populated.root, "monitor", user="mia") as app:
        assert_refused_without_token(app, "Hortus: monitoring dashboard")
        with open_app(browser, app) as page:
            kpi_chart = cell(page, "Business KPIs").locator(CHART)
            kpi_chart.wait_for(state="visible", timeout=RENDER_MS)
            wait_for_app(page, app, "Access denials")
            viewing = r"Viewing recommender as mia;.*segment {}"  # the default model
            expect(page.get_by_text(re.compile(viewing.format("ALL")))).to_be_visible()
            before = kpi_chart.evaluate("c => c.toDataURL ? c.toDataURL() : c.outerHTML")
            screenshot(page, "monitor-initial")

            segment = page.locator("select").filter(has=page.locator("option", has_text="DACH"))
            segment.select_option("DACH")

            expect(page.get_by_text(re.compile(viewing.format("DACH")))).to_be_visible(
                timeout=RENDER_MS
            )
            wait_changed(kpi_chart, before)  # redrawn with DACH's rows and title
            wait_for_app(page, app, "Access denials")
            screenshot(page, "monitor-after-segment")


def kpi_text(region: str) -> re.Pattern:
    """Return the explore app's sentence under its KPI chart for `region`."""
    return re.compile(rf"of gold\.kpi_daily for region {region} from")


@pytest.mark.integration
@needs_chromium
def test_explore_app_needs_the_token_and_follows_the_table_and_region(
    populated: Paths, browser: Browser
):
    """Check the explore app: refused without token; picking a table and a region redraws."""
    if not (REPO / "notebooks" / "explore.py").exists():
        pytest.fail("notebooks/explore.py does not exist")
    with serve(populated.root, "explore", user="sam") as app:
        assert_refused_without_token(app, "Hortus: explore the lakehouse")
        with open_app(browser, app) as page:
            kpi_chart = cell(page, "KPI trends").locator(CHART)
            kpi_chart.wait_for(state="visible", timeout=RENDER_MS)
            wait_for_app(page, app, "KPI trends")
            viewing = re.compile(r"Viewing as sam: \d+ of \d+ table")
            expect(page.get_by_text(viewing)).to_be_visible()
            expect(page.get_by_text(kpi_text("ALL"))).to_be_visible()
            # preselected: the table of the project's default model (hortus.yaml)
            preselected = Project.load(REPO).model().table
            profile = cell(page, re.compile(r"^Column profile of "))
            expect(profile.get_by_role("heading", level=2)).to_have_text(
                f"Column profile of {preselected}"
            )
            before = kpi_chart.evaluate("c => c.toDataURL ? c.toDataURL() : c.outerHTML")
            screenshot(page, "explore-initial")

            # the table selector (a searchable dropdown): pick gold.kpi_daily
            contract = cell(page, re.compile(r"^Contract and lineage of "))
            contract.get_by_role("button").filter(has_text=preselected).click()
            page.get_by_role("option", name="gold.kpi_daily", exact=True).click()
            expect(profile.get_by_role("heading", level=2)).to_have_text(
                "Column profile of gold.kpi_daily", timeout=RENDER_MS
            )
            expect(profile.get_by_text(re.compile(r"18 rows and 3 columns as sam"))).to_be_visible()
            profile.locator(CHART).wait_for(state="visible", timeout=RENDER_MS)

            # the KPI region filter
            region = page.locator("select").filter(has=page.locator("option", has_text="DACH"))
            region.select_option("DACH")
            expect(page.get_by_text(kpi_text("DACH"))).to_be_visible(timeout=RENDER_MS)
            wait_changed(kpi_chart, before)
            wait_for_app(page, app, "KPI trends")
            screenshot(page, "explore-after-table-and-region")
