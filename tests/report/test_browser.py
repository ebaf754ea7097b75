"""report.html in a real browser: headless Chromium from the system's packages renders the page built
for 41 losses, and the page itself reports whether anything is wider than the window and whether every
image decoded. Skipped, with the reason, where no Chromium is installed (CI installs Debian's)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from bench.report import build_report

BROWSER = next((name for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (apt-get install chromium)")
WIDTH = 1024  # a laptop's window
LOSSES = 41

PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const wide = [...document.querySelectorAll("body *")].filter(e => !e.closest(".scroll")
      && e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + "." + e.className);
  const result = {page: document.documentElement.scrollWidth, window: window.innerWidth, wide: wide.slice(0, 5),
                  images: images.length, broken: images.filter(i => !i.complete || i.naturalWidth === 0).length};
  document.body.insertAdjacentHTML("beforeend", "<pre id=probe>" + JSON.stringify(result) + "</pre>");
});
</script>"""


@pytest.fixture(scope="module")
def page(run_row, write_runs, tmp_path_factory):
    """The report of 41 losses × 3 seeds on two pairs, with the probe appended."""
    rows = []
    for pair in ("resnet32x4-resnet8x4", "wrn_40_2-wrn_16_2"):
        for i in range(LOSSES):
            loss = "vanilla" if i == 0 else "kd" if i == 1 else f"loss-with-a-long-name-{i:02d}"
            rows += [run_row(loss, seed, 70.0 + 0.1 * i + 0.3 * seed + (0.05 * i * seed) % 0.7, pair=pair)
                     for seed in range(3)]
    root = write_runs(rows)
    build_report(root, console=False)
    probed = tmp_path_factory.mktemp("browser") / "report.html"
    probed.write_text((root / "toy" / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    return probed


def test_nothing_overflows_and_every_image_loads(page, tmp_path):
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
               f"--window-size={WIDTH},900", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r"<pre id=\"probe\">(.*?)</pre>", dom)
    assert found, "the page's probe did not run"
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["page"] <= result["window"], result  # no horizontal scroll of the page
    assert result["wide"] == [], result  # no element reaches past the window outside a scrolling box
    assert result["images"] >= 5 and result["broken"] == 0, result
