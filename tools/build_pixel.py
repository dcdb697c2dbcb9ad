"""Build the served scripts: terser minifies the readable ``p.js`` into ``p.min.js`` and the banner's
``banner.js`` into ``banner.min.js`` (``make pixel``).

The pixel's budget is 2,000 B gzipped, the banner's 8,000 B with its CSS and texts (issues #3, #4,
#11). The readable sources get there only through a minifier that also inlines constants and folds
expressions; terser (npm, pinned in ``tools/package-lock.json``) does, tdewolff/minify does not.
Node is needed only here, at build time: the output is checked in, so ``pip install .`` and the
server need none.

Next to each ``*.min.js`` goes ``*.min.json``: the source's SHA-256, terser's version and the options.
``tests/web/test_pixel_build.py`` fails when a source changed without a rebuild, and (where the tools
are installed) rebuilds and compares byte for byte; the server serves a source through tdewolff
with a warning if its build is stale (``pixel_server/web/assets.py``).

    python tools/build_pixel.py          # write p.min.js, banner.min.js and their manifests
    python tools/build_pixel.py --check  # exit 1 if they are not what the sources build to
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
TERSER = TOOLS / "node_modules" / ".bin" / "terser"
STATIC = ROOT / "pixel_server" / "web" / "static"
SOURCE = STATIC / "p.js"
# every script built: p.js → p.min.js (+ p.min.json), banner.js → banner.min.js (+ banner.min.json)
SOURCES = (SOURCE, ROOT / "pixel_server" / "consent" / "banner" / "banner.js")

# Safe transforms only (no `unsafe*`, no `pure_getters`): two compress passes, mangled local names.
OPTIONS = ["--compress", "passes=2", "--mangle", "--ecma", "2020"]


def source_sha256(source: Path = SOURCE) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def terser_version() -> str:
    return subprocess.run(
        [str(TERSER), "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def build(source: Path = SOURCE) -> tuple[bytes, dict[str, str | list[str]]]:
    """The minified bytes (one trailing newline) and the manifest that describes them."""
    if not TERSER.exists():
        raise SystemExit(f"{TERSER} is missing: run `npm ci --prefix tools` (or `make pixel`)")
    out = subprocess.run(
        [str(TERSER), str(source), *OPTIONS], check=True, capture_output=True, text=True
    ).stdout
    manifest = {
        "source": source.name,
        "source_sha256": source_sha256(source),
        "terser": terser_version(),
        "options": OPTIONS,
    }
    return out.strip().encode("utf-8") + b"\n", manifest


def main(argv: list[str]) -> int:
    import gzip

    stale = 0
    for source in SOURCES:
        output, manifest_path = source.with_suffix(".min.js"), source.with_suffix(".min.json")
        body, manifest = build(source)
        text = json.dumps(manifest, indent=2) + "\n"
        if "--check" in argv:
            fresh = (
                output.exists()
                and output.read_bytes() == body
                and manifest_path.exists()
                and manifest_path.read_text(encoding="utf-8") == text
            )
            print(f"{output.name} is up to date" if fresh else f"{output.name} is stale: run `make pixel`")
            stale += not fresh
            continue
        output.write_bytes(body)
        manifest_path.write_text(text, encoding="utf-8")
        size = len(gzip.compress(body, 9))
        print(f"{output.name}: {len(body)} B, {size} B gzip -9 ({manifest['terser']})")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
