"""A failing audit writes terminal, JSON, JUnit and HTML reports that tools and people can
read: the JUnit parses with a real JUnit parser, the HTML opens in headless Chromium without
console errors and shows the failing case's plot."""
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

LLMREF = str(Path(sys.executable).with_name("llmref"))
WRONG = "llmref.ref.wrong.softmax:softmax_over_first_axis"  # numerical failures on most cases


@pytest.fixture(scope="module")
def failing_audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    result = subprocess.run([LLMREF, "audit", "softmax", WRONG, "--json", str(out / "r.json"),
                             "--junit", str(out / "r.xml"), "--html", str(out / "r.html")],
                            capture_output=True, text=True, timeout=300)
    return result, out


def test_terminal_report_has_a_line_per_case_and_the_repro(failing_audit):
    result, _ = failing_audit
    assert result.returncode == 1
    for case in ("random_rows", "large_logits", "very_negative_logits"):
        assert case in result.stdout
    assert "reproduce: llmref audit softmax" in result.stdout
    assert "diagnosis: matches wrong variant ignores_axis" in result.stdout


def test_json_report_follows_its_schema(failing_audit):
    _, out = failing_audit
    document = json.loads((out / "r.json").read_text())
    assert document["schema"] == "llmref-report/1"
    assert document["summary"]["passed"] is False
    report = document["reports"][0]
    assert report["component"] == "softmax" and report["isolation"] == "worker"
    failed = [c for c in report["cases"] if c["outcome"] != "PASSED"]
    assert failed and any(c["diagnosis"]["matches"] == ["ignores_axis"] for c in failed)
    for case in report["cases"]:
        for output in case["outputs"]:
            assert {"headroom", "cosine", "nmse", "worst_index"} <= set(output["metrics"]) or \
                output["outcome"] == "NAN_INF_MISMATCH"


def _failed_cases(out):
    report = json.loads((out / "r.json").read_text())["reports"][0]
    return [c["case"] for c in report["cases"] if c["outcome"] != "PASSED"]


def test_junit_parses_with_a_junit_parser(failing_audit):
    junitparser = pytest.importorskip("junitparser", reason="junitparser is in the test extra")
    _, out = failing_audit
    xml = junitparser.JUnitXml.fromfile(str(out / "r.xml"))
    suites = list(xml)
    assert len(suites) == 1
    cases = list(suites[0])
    report = json.loads((out / "r.json").read_text())["reports"][0]
    assert len(cases) == len(report["cases"]) > 0
    failed = [c for c in cases if c.result and isinstance(c.result[0], junitparser.Failure)]
    errored = [c for c in cases if c.result and isinstance(c.result[0], junitparser.Error)]
    assert {c.name for c in failed + errored} == {f"{c}[float32]" for c in _failed_cases(out)}
    assert "random_rows[float32]" in {c.name for c in failed}
    assert {c.result[0].type for c in failed} <= {"NUMERICAL_MISMATCH", "NAN_INF_MISMATCH"}
    assert {c.result[0].type for c in errored} <= {"RUNTIME_ERROR", "CRASHED", "TIMEOUT"}
    assert int(suites[0].errors) == len(errored)


class _Structure(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.failures, self.images, self.scripts, self.links = [], [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section" and attrs.get("class") == "failure":
            self.failures.append(attrs["data-case"])
        if tag == "img":
            self.images.append(attrs)
        self.scripts += tag == "script"
        self.links += tag == "link" or (tag == "img" and not attrs.get("src", "").startswith("data:"))


def test_html_is_self_contained_and_shows_every_failure(failing_audit):
    _, out = failing_audit
    page = _Structure()
    page.feed((out / "r.html").read_text())
    assert page.failures == _failed_cases(out) and "random_rows" in page.failures
    assert page.scripts == 0 and page.links == 0  # nothing to fetch
    text = (out / "r.html").read_text()
    assert "Diagnosis: matches wrong variant <b>ignores_axis</b>" in text
    assert "id='coverage'" in text and "reproduce" in text.lower()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "install the report extra" in text
    else:
        report = json.loads((out / "r.json").read_text())["reports"][0]
        numerical = [c for c in report["cases"] if c["outcome"] == "NUMERICAL_MISMATCH"]
        assert len(page.images) == len(numerical) > 0  # NaN/Inf mismatches have no finite error
        assert all(i["class"] == "histogram" for i in page.images)


def test_html_opens_in_headless_chromium_and_shows_the_plot(failing_audit, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (report extra)")
    _, out = failing_audit
    errors = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "r.html").as_uri())
        figure = page.locator("section.failure[data-case='random_rows'] img.histogram")
        figure.scroll_into_view_if_needed()
        box = figure.bounding_box()
        loaded = figure.evaluate("img => img.complete && img.naturalWidth > 0")
        shot, plot = tmp_path / "failure.png", tmp_path / "plot.png"
        page.locator("section.failure[data-case='random_rows']").screenshot(path=str(shot))
        figure.screenshot(path=str(plot))
        browser.close()
    assert errors == []
    assert loaded and box["width"] >= 500 and box["height"] >= 200  # rendered, at its size
    import numpy as np
    from PIL import Image

    gray = np.asarray(Image.open(shot).convert("L"))
    assert gray.shape[1] > 500 and gray.shape[0] > 300
    assert 0.01 < float((gray < 128).mean()) < 0.6  # text and a plot, not blank or black
    rgb = np.asarray(Image.open(plot).convert("RGB")).astype(int)
    bars = (rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert bars.sum() > 500  # the histogram's bars are drawn inside the plot itself
    right = bars[:, bars.shape[1] // 2:].sum()  # failing errors lie right of the dashed line
    assert right > 0
