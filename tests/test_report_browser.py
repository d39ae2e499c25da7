"""The HTML reports as a person sees them: rendered by headless Chromium.

Selenium drives the machine's own Chromium through the distribution's chromedriver (Debian:
``apt-get install chromium chromium-driver``; ``.ci/run`` installs them when missing).  No
browser is downloaded from anywhere else.  Where none is found the tests are skipped with
the reason, except under ``CI=true``, where a missing browser fails them.

Set ``WSGAPS_SCREENSHOTS=DIR`` to keep a full-page screenshot of every page checked.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from gaps.catalog import GAPS
from gaps.model import CheckResult, GapResult, RunResult, TargetInfo, Verdict
from gaps.report import write_reports
from tests.test_report import IMG, SCRIPT, hostile_run, skipped_run

WIDTH = 1280
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver",)
# The built-in targets, so that the matrix has the columns a newcomer's `make report` has.
BUILT_IN = ("aiohttp", "axum", "gofr", "node-ws", "reference", "tornado", "uvicorn", "websockets")
STATUSES = ("pass", "partial", "missing", "unknown", "skipped")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs a browser for the report checks: {reason}", pytrace=False)
    pytest.skip(reason)


def find_browser() -> tuple[str, str]:
    """The paths of a Chromium and its chromedriver; skips (fails under CI) without them."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    if browser is None or driver is None:
        missing = " and ".join(name for name, path in
                               (("chromium", browser), ("chromedriver", driver)) if not path)
        _unavailable(f"no {missing} on PATH (Debian: apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("the selenium package is not installed (pip install -e '.[test]')")
    binary, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={WIDTH},900",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


# --- the reports under test ---------------------------------------------------------------

def varied_run(name: str, index: int) -> RunResult:
    """A plain target whose gaps take turns at pass, partial, missing and unknown."""
    run = RunResult(TargetInfo(name=name, version=f"{name} 1.{index}.0"), "0.1.0",
                    started=1_700_000_000.0 + index, finished=1_700_000_060.0 + index)
    for n, gap in enumerate(GAPS):
        capability = [c for c in gap.checks if c.kind == "capability"][:2]
        kind = (n + index) % 4
        if kind == 3 or len(capability) < 2:
            continue  # unknown: not probed
        verdicts = [(Verdict.PASS, Verdict.PASS), (Verdict.PASS, Verdict.FAIL),
                    (Verdict.FAIL, Verdict.FAIL)][kind]
        run.gaps[gap.slug] = GapResult(gap.slug, checks=[
            CheckResult(c.id, v, f"{c.id} {v}", evidence={"wait": 5.0, "close_code": 1000,
                                                          "reason": None})
            for c, v in zip(capability, verdicts, strict=True)])
    return run


def write_site(folder: Path, names: list[str]) -> Path:
    """Results and reports for ``names``: ``reference`` carries hostile target text and an
    error flag, ``gofr`` is skipped (its build failed), the others vary; returns the folder."""
    files = []
    for index, name in enumerate(names):
        if name == "reference":
            run = hostile_run(name)
        elif name == "gofr":
            run = skipped_run(name)
        else:
            run = varied_run(name, index)
        path = folder / name / "results.json"
        run.write(path)
        files.append(path)
    write_reports(files)
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_site(tmp_path_factory.mktemp("reports"), list(BUILT_IN))


# --- looking at a page ----------------------------------------------------------------------

def show(driver, page: Path, shot: str | None = None) -> list[dict]:
    """Open ``page`` at 1280 px; the console messages it logged."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    driver.get(page.as_uri())
    logs = driver.get_log("browser")
    folder = os.environ.get("WSGAPS_SCREENSHOTS")
    if folder and shot:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": min(height, 8000), "deviceScaleFactor": 1,
            "mobile": False})
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{shot}.png"))
    return logs


def horizontal_overflow(driver) -> int:
    return driver.execute_script(
        "const e = document.documentElement; return e.scrollWidth - e.clientWidth;")


class Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for name, value in attrs if name == "id" and value)


def assert_links_resolve(driver, root: Path) -> int:
    """Every link of the page names a file under ``root``, and its anchor exists there."""
    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]'), a => a.href);")
    assert hrefs
    for href in hrefs:
        url = urlsplit(href)
        assert url.scheme == "file", href
        path = Path(unquote(url.path))
        assert path.is_file() and path.resolve().is_relative_to(root.resolve()), href
        if url.fragment:
            text = path.read_text(encoding="utf-8")
            ids = Ids()
            ids.feed(text)
            assert url.fragment in ids.ids, href
    return len(hrefs)


def assert_no_target_markup(driver) -> None:
    found = driver.execute_script("""
        const bad = Array.from(document.querySelectorAll(
            'script, img, iframe, object, embed, link, form, input'), e => e.tagName);
        for (const e of document.querySelectorAll('*'))
            for (const a of e.attributes)
                if (a.name.startsWith('on')) bad.push(e.tagName + '@' + a.name);
        return bad;""")
    assert found == []


def assert_quiet_console(logs: list[dict]) -> None:
    assert [entry for entry in logs if entry.get("level") in ("SEVERE", "WARNING")] == []


# --- the checks --------------------------------------------------------------------------------

def test_index_at_1280px(browser, site: Path) -> None:
    logs = show(browser, site / "index.html", "index")
    assert_quiet_console(logs)
    assert horizontal_overflow(browser) <= 0
    assert_no_target_markup(browser)
    assert assert_links_resolve(browser, site) >= len(GAPS) * len(BUILT_IN)
    cells = browser.execute_script("""
        return Array.from(document.querySelectorAll('td.cell'), td => {
            const a = td.querySelector('a'), style = getComputedStyle(a);
            return {status: td.className.replace('cell st-', ''), color: style.color,
                    background: getComputedStyle(td).backgroundColor,
                    lines: Math.round(td.querySelector('a').getBoundingClientRect().height
                                      / parseFloat(style.lineHeight)),
                    text: a.innerText.trim()};
        });""")
    assert len(cells) == len(GAPS) * len(BUILT_IN)
    assert {c["status"] for c in cells} == set(STATUSES)
    # Status reads from colour and word: one colour pair per status, all different, and the
    # word is there as text (the icon is an inline SVG that needs no font).
    colours = {c["status"]: (c["color"], c["background"]) for c in cells}
    for cell in cells:
        assert (cell["color"], cell["background"]) == colours[cell["status"]]
        assert cell["text"] == cell["status"].capitalize(), cell
        assert cell["lines"] == 1, cell  # no status cell wraps
    assert len({text for text, _ in colours.values()}) == len(STATUSES)
    assert len({background for _, background in colours.values()}) == len(STATUSES)
    plain_link = browser.execute_script(
        "return getComputedStyle(document.querySelector('th.target a')).color;")
    assert plain_link not in {text for text, _ in colours.values()}
    assert browser.execute_script(
        "return Array.from(document.querySelectorAll('td.cell a svg')).length;"
    ) == len(cells)


def test_a_wide_matrix_scrolls_inside_its_box(browser, tmp_path: Path) -> None:
    names = [f"{name}-{n}" for n in (1, 2) for name in BUILT_IN]
    site = write_site(tmp_path, names)
    assert_quiet_console(show(browser, site / "index.html", "index-wide"))
    assert horizontal_overflow(browser) <= 0
    box = browser.execute_script("""
        const s = document.querySelector('.scroll');
        return [s.scrollWidth, s.clientWidth, getComputedStyle(s).overflowX];""")
    assert box[0] > box[1] and box[2] == "auto"
    assert browser.execute_script("""
        return Array.from(document.querySelectorAll('td.cell a'))
            .every(a => a.getClientRects().length === 1);""")


def test_target_report_at_1280px(browser, site: Path) -> None:
    page = site / "reference" / "gap-report.html"
    logs = show(browser, page, "report")
    assert_quiet_console(logs)
    assert horizontal_overflow(browser) <= 0
    assert_no_target_markup(browser)
    assert assert_links_resolve(browser, site) > 1  # the matrix and the summary's gaps
    text = browser.execute_script("return document.body.innerText;")
    assert SCRIPT in text and IMG in text  # target text shown as text
    shapes = browser.execute_script("""
        const lines = e => Math.round(e.getBoundingClientRect().height
                                      / parseFloat(getComputedStyle(e).lineHeight));
        return {
            chips: Array.from(document.querySelectorAll('code.figure'), lines),
            keys: Array.from(document.querySelectorAll('table.entries th'),
                             th => lines(th.querySelector('code'))),
            statuses: Array.from(document.querySelectorAll('section.gap .status'), lines),
        };""")
    assert shapes["chips"] and set(shapes["chips"]) == {1}  # no chip broken inside a token
    assert shapes["keys"] and set(shapes["keys"]) == {1}  # settings keys on one line
    assert len(shapes["statuses"]) == len(GAPS) and set(shapes["statuses"]) == {1}
    colours = browser.execute_script("""
        return Array.from(document.querySelectorAll('section.gap'), s =>
            [s.className, getComputedStyle(s).borderLeftColor,
             getComputedStyle(s.querySelector('.status')).color]);""")
    by_status = {name: (border, color) for name, border, color in colours}
    assert len(set(by_status.values())) == len(by_status) >= 4  # partial, missing, pass, unknown


@pytest.mark.parametrize("name", ["aiohttp", "websockets"])
def test_target_report_opens_on_the_summary(browser, site: Path, name: str) -> None:
    """At 1280 x 800 the first screen holds the table of the fourteen gaps and the heading
    of the first gap; the run's details come after the gaps and the summary."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": WIDTH, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    browser.get((site / name / "gap-report.html").as_uri())
    found = browser.execute_script("""
        const top = s => document.querySelector(s).getBoundingClientRect().top;
        const first = document.querySelector('section.gap h3');
        return {table: top('table.glance'), gap: top('section.gap'),
                heading: first.getBoundingClientRect().bottom,
                rows: document.querySelectorAll('table.glance tbody tr').length,
                summary: top('#summary'), details: top('#run-details'),
                screen: window.innerHeight, scrolled: window.scrollY};""")
    assert found["scrolled"] == 0 and found["screen"] == 800
    assert found["rows"] == len(GAPS)
    assert found["table"] < found["gap"] < found["summary"] < found["details"]
    assert found["heading"] <= found["screen"], found  # the first gap, on the first screen


def test_skipped_target_report(browser, site: Path) -> None:
    logs = show(browser, site / "gofr" / "gap-report.html", "report-skipped")
    assert_quiet_console(logs)
    assert horizontal_overflow(browser) <= 0
    assert_links_resolve(browser, site)
    text = browser.execute_script("return document.body.innerText;")
    assert text.count("Skipped") >= len(GAPS) and "Unknown" not in text.split("Identified")[1]
    assert "Build\nfailed" in text or "Build failed" in text


def test_no_browser_skips_with_the_reason_but_fails_under_ci(tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no browser, no driver
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium and chromedriver on PATH"):
        find_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs a browser"):
        find_browser()
