"""The pixel's size budget (issue #3): p.js ≤ 2,000 bytes gzipped, served as is, comments included.

Measured like ``gzip -9 -c static/js/p.js | wc -c`` (the header names the file, as
the command line does); what the server sends is 5 bytes less (no file name).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

PIXEL = Path(__file__).resolve().parents[2] / "static" / "js" / "p.js"
BUDGET = 2000


def gzipped_size(path: Path) -> int:
    buf = io.BytesIO()
    with gzip.GzipFile(filename=path.name, mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(path.read_bytes())
    return len(buf.getvalue())


def test_pixel_fits_its_gzip_budget() -> None:
    size = gzipped_size(PIXEL)
    print(f"\np.js: {PIXEL.stat().st_size} B, {size} B gzipped (budget {BUDGET} B)")
    assert size <= BUDGET, f"p.js is {size} B gzipped, over the {BUDGET} B budget by {size - BUDGET} B"
