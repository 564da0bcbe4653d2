"""report.html laid out by headless Chromium at a laptop and a phone width: the overview is the
first thing after the title, in the first screen, and no table widens the page (wide tables scroll
inside their own box with the variant column fixed). Screenshots are kept under pytest's tmp dir."""

import json
import re
import shutil
import subprocess

import pytest
from synthetic_store import build_synthetic_store

from peft_audit.report import write_reports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
#: the height of a first screen at each width (a 1280x800 laptop, a 390x844 phone)
SCREENS = {1280: 800, 390: 844}

#: Measures the laid-out page and writes the numbers into the DOM for --dump-dom to carry out.
PROBE = """<script>
window.addEventListener("load", function () {
  var doc = document.documentElement, ov = document.getElementById("overview-table");
  var firstH2 = document.querySelector("h2");
  // a table may be wider than the page only inside a box that scrolls it (its own, or a .scroll div)
  var tables = Array.prototype.map.call(document.querySelectorAll("table"), function (t) {
    var box = t;
    while (box !== document.body && getComputedStyle(box).overflowX === "visible") box = box.parentElement;
    return box.getBoundingClientRect().right; });
  var cell = ov.querySelector("tr:nth-child(2) > th"), box = ov.parentElement;
  box.scrollLeft = 10000;  // scroll the overview sideways: its variant column must stay in view
  var out = {scrollWidth: doc.scrollWidth, innerWidth: window.innerWidth, firstH2: firstH2.id,
             overviewTop: ov.getBoundingClientRect().top, overviewBottom: ov.getBoundingClientRect().bottom,
             maxTableRight: Math.max.apply(null, tables), boxScrolls: box.scrollWidth > box.clientWidth,
             stickyLeft: cell.getBoundingClientRect().left - box.getBoundingClientRect().left};
  box.scrollLeft = 0;
  parent.postMessage(out, "*");
});
</script>"""

#: The report in a frame of the width under test: headless Chromium will not make its window
#: narrower than 500 px, a frame can be any width. The frame's probe posts its numbers here.
HOST = """<!doctype html><html><body style="margin:0">
<iframe src="{src}" style="width:{width}px;height:{height}px;border:0;display:block"></iframe>
<script>addEventListener("message", function (e) {{
  var pre = document.createElement("pre"); pre.id = "layout-probe"; pre.textContent = JSON.stringify(e.data);
  document.body.appendChild(pre); }});</script></body></html>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = build_synthetic_store(tmp_path_factory.mktemp("run"), n_variants=10, seed=4)
    write_reports(d, formats=["html"], n_boot=200)
    return d / "report.html"


def _chromium(args: list[str], profile) -> subprocess.CompletedProcess:
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (install it with `apt-get install -y chromium`)")
@pytest.mark.parametrize("width", sorted(SCREENS, reverse=True))
def test_overview_first_and_no_horizontal_overflow(report, tmp_path, width):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    host = tmp_path / "host.html"
    host.write_text(HOST.format(src=probed.name, width=width, height=SCREENS[width]))
    dom = _chromium([f"--window-size={width + 40},{SCREENS[width] + 40}", "--virtual-time-budget=20000", "--dump-dom",
                     host.as_uri()], tmp_path / "p1").stdout
    m = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom)
    assert m, "the probe did not run: " + dom[-500:]
    got = json.loads(m.group(1).replace("&quot;", '"'))
    assert got["innerWidth"] == width
    assert got["scrollWidth"] <= got["innerWidth"], f"the page is wider than the window: {got}"
    assert got["maxTableRight"] <= width + 1, f"a table sticks out of the page: {got}"
    assert got["firstH2"] == "overview", got
    assert got["overviewTop"] < SCREENS[width] * 0.6, f"the overview is not in the first screen: {got}"
    if width == 390:  # the overview is wider than a phone: it scrolls in its box, the variant column stays
        assert got["boxScrolls"] and abs(got["stickyLeft"]) <= 1, got
    else:
        assert got["overviewBottom"] <= SCREENS[width], f"the overview does not fit the first screen: {got}"
    shot = tmp_path / f"report-{width}px.png"
    framed = tmp_path / "framed.html"
    framed.write_text(HOST.format(src=report.as_uri(), width=width, height=2000))
    _chromium([f"--window-size={max(width, 500)},2000", f"--screenshot={shot}", "--virtual-time-budget=5000",
               framed.as_uri()], tmp_path / "p2")
    assert shot.stat().st_size > 10_000
    print(f"screenshot at {width} px: {shot}")
