"""Build the served pixel: terser minifies the readable ``p.js`` into ``p.min.js`` (``make pixel``).

The pixel's budget is 2,000 B gzipped (issue #11). The readable source gets there only through a
minifier that also inlines constants and folds expressions; terser (npm, pinned in
``tools/package-lock.json``) does, tdewolff/minify (what serves ``b.js``) does not. Node is needed
only here, at build time: the output is checked in, so ``pip install .`` and the server need none.

Next to ``p.min.js`` goes ``p.min.json``: the source's SHA-256, terser's version and the options.
``tests/web/test_pixel_build.py`` fails when ``p.js`` changed without a rebuild, and (where the tools
are installed) rebuilds and compares byte for byte; the server serves the source through tdewolff
with a warning if the build is stale (``pixel_server/web/assets.py``).

    python tools/build_pixel.py          # write p.min.js and p.min.json
    python tools/build_pixel.py --check  # exit 1 if they are not what the source builds to
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
OUTPUT = STATIC / "p.min.js"
MANIFEST = STATIC / "p.min.json"

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
        "source": "p.js",
        "source_sha256": source_sha256(source),
        "terser": terser_version(),
        "options": OPTIONS,
    }
    return out.strip().encode("utf-8") + b"\n", manifest


def main(argv: list[str]) -> int:
    body, manifest = build()
    text = json.dumps(manifest, indent=2) + "\n"
    if "--check" in argv:
        fresh = OUTPUT.read_bytes() == body and MANIFEST.read_text(encoding="utf-8") == text
        print("p.min.js is up to date" if fresh else "p.min.js is stale: run `make pixel`")
        return 0 if fresh else 1
    OUTPUT.write_bytes(body)
    MANIFEST.write_text(text, encoding="utf-8")
    import gzip

    print(f"p.min.js: {len(body)} B, {len(gzip.compress(body, 9))} B gzip -9 ({manifest['terser']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
