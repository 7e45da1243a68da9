"""report.html in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

The page is rendered from hand-made results (no framework runs), opened over file:// at 1280x900,
and checked as a reader would see it. A full-page screenshot is kept in test-artifacts/.
Without Chromium or Playwright the tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_results

from spotdiff.report import html

CHROMIUM = Path(os.environ.get("SPOTDIFF_CHROMIUM", "/usr/bin/chromium"))
# Debian's chromium needs these in a container; the rest keep it from phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "report-1280.png"
LOCAL_SCHEMES = ("file:", "data:", "about:")


def _missing(what: str) -> None:
    """Fail in CI, where the browser test must run; skip on a developer's machine."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what}; `make test` installs it (apt-get install chromium) where it can.")
    pytest.skip(what)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(results, page, log) with the report loaded; log holds console errors, page errors, requests."""
    if not CHROMIUM.exists():
        _missing(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Python package playwright is not installed (pip install -e '.[test]')")

    results = make_results()
    run_dir = tmp_path_factory.mktemp("run")
    url = html.render_report(results, run_dir).as_uri()
    log: dict[str, list[str]] = {"console": [], "page": [], "requests": []}
    with sync_playwright() as playwright:
        # A fresh profile each run; never `playwright install`: the system Chromium is the browser.
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport=VIEWPORT,
        )
        # Anything that would leave the machine fails fast instead of hanging on a missing network.
        context.route(lambda u: not u.startswith(LOCAL_SCHEMES), lambda route: route.abort())
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and log["console"].append(m.text))
        page.on("pageerror", lambda e: log["page"].append(str(e)))
        page.on("request", lambda r: log["requests"].append(r.url))
        page.goto(url, wait_until="load")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOT, full_page=True)
        yield results, page, log
        context.close()


def test_summary_and_parity_sections_are_shown(report):
    _, page, _ = report
    assert page.locator("#summary h2").inner_text() == "Which fits your needs"
    assert page.locator("#summary table").count() == 2  # one per task
    assert page.locator("#parity table").is_visible()
    assert page.locator("#parity").get_by_text("FAIL").is_visible()


def test_one_results_row_per_cell(report):
    results, page, _ = report
    rows = page.eval_on_selector_all(
        "section[id^='task-'] tr.ok, section[id^='task-'] tr.failed, section[id^='task-'] tr.skipped",
        # the mode cell also says what the mode runs, on a line of its own
        "rows => rows.map(r => [...r.cells].slice(0, 4).map(c => c.innerText.trim().split('\\n')[0]))",
    )
    expected = [[c["framework"], c["mode"], c["variant"], c["status"]] for c in results["cells"]]
    assert sorted(rows) == sorted(expected)


def test_failed_and_skipped_cells_say_why(report):
    _, page, _ = report
    error = page.locator("tr.failed td.error")
    assert error.is_visible()
    assert error.inner_text().startswith("XLA compile failed: <boom> & more")
    box = error.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]
    assert page.locator("tr.skipped td.error").inner_text().startswith("jax is not installed")


def test_no_console_or_page_errors(report):
    _, _, log = report
    assert log["console"] == []
    assert log["page"] == []


def test_no_request_leaves_the_page(report):
    _, _, log = report
    assert log["requests"], "the page itself should have been requested"
    assert [u for u in log["requests"] if not u.startswith(LOCAL_SCHEMES)] == []


def test_every_image_and_plot_is_drawn(report):
    _, page, _ = report
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.src.slice(0, 80), i.naturalWidth])")
    assert [src for src, width in images if not width] == []
    boxes = page.eval_on_selector_all(
        "svg", "svgs => svgs.map(s => { const b = s.getBoundingClientRect(); return [b.width, b.height]; })")
    assert len(boxes) >= 5  # loss and phi per exponent variant, speed charts, mystery accuracy
    assert [b for b in boxes if not (b[0] > 0 and b[1] > 0)] == []


def test_no_plot_labels_overlap(report):
    _, page, _ = report
    overlaps = page.eval_on_selector_all("svg", r"""svgs => svgs.flatMap(svg => {
        const boxes = [...svg.querySelectorAll("text")].filter(t => t.textContent.trim())
            .map(t => [t.textContent.replace(/\s+/g, ""), t.getBoundingClientRect()]);
        const hit = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1
            && b.top < a.bottom - 1;
        return boxes.flatMap(([ta, a], i) => boxes.slice(i + 1).filter(([, b]) => hit(a, b))
            .map(([tb]) => ta + " / " + tb));
    })""")
    assert overlaps == []


def test_nothing_overflows_at_1280_px(report):
    _, page, _ = report
    page_width, window_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert page_width <= window_width, f"the page is {page_width} px wide in a {window_width} px window"
    # Tables scroll inside their frame when too wide; at 1280 px none should need to.
    scrolling = page.eval_on_selector_all(
        ".table-wrap",
        "wraps => wraps.filter(w => w.scrollWidth > w.clientWidth).map(w => w.innerText.slice(0, 60))",
    )
    assert scrolling == []
