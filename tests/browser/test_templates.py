"""A compiled path template matches the same in Chromium as in Python (issue #7 §5)."""

from __future__ import annotations

import re

from playwright.sync_api import Page

from pixel_server.core.settings import compile_path_template
from tests.core.test_templates import CASES


def test_compiled_templates_match_identically_in_chromium(page: Page) -> None:
    page.set_content("<title>templates</title>")
    pairs = [(compile_path_template(t), path) for t, path, _ in CASES]
    # as the pixel does it: path.match(cfg.ad_pattern) with the string from the site config
    js = page.evaluate(
        "pairs => pairs.map(([rx, path]) => { const m = path.match(rx); return m ? (m[1] ?? '') : null; })",
        pairs,
    )
    py = []
    for rx, path in pairs:
        m = re.search(rx, path)
        py.append(None if m is None else (m.group(1) or "") if m.groups() else "")
    assert js == py == [ad for _, _, ad in CASES]
