"""The banner's size budget (issue 4): JS + CSS + the three languages ≤ 8,000 bytes, gzip -9."""

from __future__ import annotations

import base64
import gzip
import json
import random
from pathlib import Path

from pixel_server.web.assets import BANNER_DIR, banner_bundle

BUDGET = 8_000
LANGS = ("nb", "nn", "en")


def test_served_banner_fits_the_budget() -> None:
    bundle = banner_bundle()  # exactly what GET /b.js serves
    size = len(gzip.compress(bundle, 9))
    print(f"\nb.js: {len(bundle):,} B raw, {size:,} B gzip -9 (budget {BUDGET:,})")
    assert size <= BUDGET, f"b.js is {size:,} B gzipped, over the {BUDGET:,} B budget"


def test_budget_test_can_fail(tmp_path: Path) -> None:
    banner = tmp_path / "banner"
    (banner / "texts").mkdir(parents=True)
    for name in ("banner.css", "banner.js"):
        (banner / name).write_bytes((BANNER_DIR / name).read_bytes())
    for lang in ("nb", "nn", "en"):
        (banner / "texts" / f"{lang}.json").write_bytes((BANNER_DIR / "texts" / f"{lang}.json").read_bytes())
    # incompressible code standing in for a bloated banner (a comment would be stripped when served)
    pad = base64.b64encode(random.Random(1).randbytes(12_000))
    (banner / "banner.js").write_bytes(
        (BANNER_DIR / "banner.js").read_bytes() + b'\nvar pad = "' + pad + b'";\n'
    )
    assert len(gzip.compress(banner_bundle(banner), 9)) > BUDGET


def test_every_language_has_every_text() -> None:
    texts = {
        lang: json.loads((BANNER_DIR / "texts" / f"{lang}.json").read_text("utf-8"))
        for lang in ("nb", "nn", "en")
    }
    # nn falls back to nb for words spelled the same in both (the banner merges nb under each language)
    assert set(texts["nn"]) <= set(texts["nb"])
    assert set(texts["en"]) == set(texts["nb"])
    for lang, t in texts.items():
        assert all(isinstance(v, str) and v.strip() for v in t.values()), lang


def test_every_text_key_the_banner_uses_exists() -> None:
    import re

    js = (BANNER_DIR / "banner.js").read_text("utf-8")
    nb = json.loads((BANNER_DIR / "texts" / "nb.json").read_text("utf-8"))
    used = set(re.findall(r"(?:text|button)\('(\w+)'", js))
    used |= {
        "necessary_d",
        "statistics_d",
        "marketing_d",
        "necessary",
        "statistics",
        "marketing",
        "withdraw",
        "expired",
    }
    assert used <= set(nb), used - set(nb)
