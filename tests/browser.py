"""The segment report in a real headless browser (Debian's chromium): it loads, every image
decodes, no resource fails, and nothing makes the page wider than a 1280-pixel window.

The probe is a copy of the report with two small scripts: one first in ``<head>`` that records
every error (a script error, or a resource that fails to load), one that measures after
``load`` and writes its findings into an attribute of ``<body>``, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

WINDOW = 1280

_HEAD = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target || {};
  window.__errors.push(e.message || ("failed to load " + (t.tagName || "") + " " + (t.alt || "")));
}, true);
</script>"""

_PROBE = """<script>
var WINDOW = __WINDOW__;
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt; });
  var wide = Array.prototype.slice.call(document.querySelectorAll("body *"))
    .filter(function (e) {
      return e.getBoundingClientRect().right > WINDOW + 0.5 && !e.closest(".wide");
    })
    .map(function (e) { return e.tagName; }).slice(0, 5);
  document.body.setAttribute("data-probe", JSON.stringify({
    images: imgs.length, broken: broken, errors: window.__errors,
    width: document.documentElement.scrollWidth, wide: wide,
    title: document.title, h2: document.querySelectorAll("h2").length}));
});
</script>""".replace("__WINDOW__", str(WINDOW))


def chromium() -> str:
    """The chromium binary; the test skips (CI installs it: .ci/run) when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH (apt-get install chromium)")


def probe(report: Path, work: Path) -> dict[str, Any]:
    """Open ``report`` in headless chromium at 1280x900 and return what the probe found."""
    text = report.read_text()
    text = text.replace("<head>", "<head>" + _HEAD, 1).replace("</body>", _PROBE + "</body>", 1)
    page = work / "probe.html"
    page.write_text(text)
    out = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={WINDOW},900", "--virtual-time-budget=10000",
         f"--user-data-dir={work / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    found = re.search(r'data-probe="([^"]*)"', out.stdout)
    assert found, f"the probe did not run: rc={out.returncode}\n{out.stderr[-2000:]}"
    return dict(json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")))


def assert_reads_well(report: Path, work: Path, images: int) -> dict[str, Any]:
    """The report renders without errors, its ``images`` (at least) all load, and it fits."""
    found = probe(report, work)
    assert found["errors"] == [], found
    assert found["broken"] == [] and found["images"] >= images, found
    assert found["width"] <= WINDOW and found["wide"] == [], found
    return found
