"""The served scripts are the builds of their readable sources (issue #11): ``make pixel`` runs terser
over ``static/p.js`` into ``static/p.min.js`` and over ``consent/banner/banner.js`` into
``banner.min.js``, and records each source's SHA-256 in the ``*.min.json`` beside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pixel_server.web.assets import (
    BANNER_DIR,
    PIXEL_PATH,
    build_is_fresh,
    built_js,
    pixel_bundle,
)

ROOT = Path(__file__).resolve().parents[2]
TERSER = ROOT / "tools" / "node_modules" / ".bin" / "terser"


def test_the_checked_in_builds_are_of_these_sources() -> None:
    assert build_is_fresh(PIXEL_PATH), "p.js changed since p.min.js was built: run `make pixel`"
    assert pixel_bundle() == PIXEL_PATH.with_suffix(".min.js").read_bytes()
    banner = BANNER_DIR / "banner.js"
    assert build_is_fresh(banner), "banner.js changed since banner.min.js was built: run `make pixel`"
    assert built_js(banner) == banner.with_suffix(".min.js").read_bytes()


def test_an_edited_source_is_noticed_and_served_from_the_source(tmp_path: Path) -> None:
    for name in ("p.js", "p.min.js", "p.min.json"):
        shutil.copy(PIXEL_PATH.with_name(name), tmp_path / name)
    copy = tmp_path / "p.js"
    assert build_is_fresh(copy)
    copy.write_text(copy.read_text().replace("const IDLE_MS = 5000;", "const IDLE_MS = 6000;"))
    assert not build_is_fresh(copy)
    served = pixel_bundle(copy)
    assert served != (tmp_path / "p.min.js").read_bytes() and b"6e3" in served  # the edit is live


@pytest.mark.skipif(not TERSER.exists(), reason="terser is not installed (npm ci --prefix tools)")
def test_rebuilding_gives_the_checked_in_bytes() -> None:
    """Where the build tools are installed (``make test`` installs them when npm is there)."""
    done = subprocess.run(
        [sys.executable, "tools/build_pixel.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_built_scripts_need_no_syntax_newer_than_promised() -> None:
    """ARCHITECTURE.md promises Chrome 73+, Firefox 67+, Safari 12.1+: no optional chaining or
    nullish coalescing (ES2020) in what pages download, whatever the minifier's --ecma allows."""
    for built in (PIXEL_PATH.with_suffix(".min.js"), BANNER_DIR / "banner.min.js"):
        text = built.read_text()
        assert "?." not in text and "??" not in text, built.name
