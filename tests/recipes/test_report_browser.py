"""report.html in a real headless browser (Debian's chromium driven by Playwright): every chart is decoded and
on screen, the diagnosis is there, and opening the page asks for nothing beyond the file itself (it must work
offline). A screenshot of the whole page is left in the test's tmp dir for a human to look at."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.recipes.test_eval_recipe import TEST, TRAIN, lapidar
from tests.recipes.test_report_recipe import train_with

pytestmark = pytest.mark.recipe


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A 10-step run on 6 rows with generation metrics every 5 steps, evaluated against its base: the report's
    sections are filled (diagnosis, 4 charts, key numbers, before/after, samples, data, config; the probe is off,
    it would double the time)."""
    root = tmp_path_factory.mktemp("browser")
    train, val = root / "train.jsonl", root / "val.jsonl"
    train.write_text("".join(TRAIN.read_text().splitlines(keepends=True)[:6]))
    val.write_text("".join(TEST.read_text().splitlines(keepends=True)[:6]))
    run, _ = train_with(
        root, "run", (train, val), lr=2e-3, max_steps=10, eval_steps=5, eval_every=5, eval_rows=6,
        eval_metrics=["accuracy"],
    )  # fmt: skip
    lapidar("eval", str(run), "--data", str(val), "--compare-base", "--max-new-tokens", "8", "--probe", "none")
    lapidar("report", str(run))
    return run / "report.html"


def test_report_renders_offline_with_every_chart_visible(browser, report, tmp_path):
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri(), wait_until="load")

    # nothing but the page itself and its embedded data: URLs (no fonts, scripts, images or pings from outside)
    outside = [url for url in requests if not url.startswith(("file://", "data:"))]
    assert not outside, outside
    assert requests[0] == report.as_uri()

    images = page.eval_on_selector_all(
        "img",
        """imgs => imgs.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
                                   height: i.naturalHeight, src: i.src.slice(0, 22)}))""",
    )
    # loss, learning rate, throughput, generation metrics
    assert [i["alt"] for i in images] == ["loss curves", "learning rate", "throughput", "validation metrics"]
    for img in images:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
        assert img["src"] == "data:image/png;base64,", img
    for element in page.query_selector_all("img"):
        box = element.bounding_box()
        assert element.is_visible() and box and box["width"] > 100 and box["height"] > 50, box
        # scaled to the page, never wider than the viewport
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1200, box

    diagnosis = page.locator("h2", has_text="Diagnosis")
    assert diagnosis.is_visible()
    findings = page.locator(".finding")
    assert findings.count() >= 2 and findings.first.is_visible()
    text = page.inner_text("body")
    assert "Random base weights" in text and "→" in text
    assert "Before / after" in text and "Sample answers" in text
    # the page does not scroll sideways: wide tables (config, sample answers) stay within the window
    assert page.evaluate("document.documentElement.scrollWidth") <= 1200

    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    page.close()
