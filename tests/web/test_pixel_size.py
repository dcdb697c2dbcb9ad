"""The pixel's size budget (issues #3 and #11: 2,000 B): p.js gzipped, as the page downloads it.

The server serves the readable ``static/p.js`` as built by terser (``make pixel`` →
``static/p.min.js``; :func:`pixel_server.web.assets.pixel_bundle`), gzipped at level 9; that is
what is measured.
"""

from __future__ import annotations

import gzip

from pixel_server.web.assets import PIXEL_PATH, Assets, pixel_bundle
from tests.harness import PIXEL_BUDGET_GZ

BUDGET = PIXEL_BUDGET_GZ


def test_pixel_fits_its_gzip_budget() -> None:
    size = len(gzip.compress(pixel_bundle(), 9))
    print(f"\np.js: {PIXEL_PATH.stat().st_size} B source, {len(pixel_bundle())} B served, {size} B gzipped")
    assert size <= BUDGET, f"p.js is {size} B gzipped, over the {BUDGET} B budget by {size - BUDGET} B"


def test_the_measured_bytes_are_the_served_bytes() -> None:
    assert gzip.decompress(Assets().pixel.gz) == pixel_bundle()
    assert len(Assets().pixel.gz) <= BUDGET
