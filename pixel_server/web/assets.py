"""The scripts the page loads, served the way Plausible serves its tracker.

``/p.js`` (the pixel) is the readable ``static/p.js`` minified by terser at build time
(``make pixel`` → ``static/p.min.js``, checked in with ``static/p.min.json``: the source's SHA-256);
``/b.js`` (the banner: CSS and the three languages' texts inlined in front of ``banner.js``) is
minified by tdewolff/minify at start-up. Both are gzipped once and served with an ETag, a cache
lifetime, ``nosniff`` and ``Cross-Origin-Resource-Policy: cross-origin``. ``/s/{site}.json`` is the
site's public configuration (see ARCHITECTURE.md).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import minify  # type: ignore[import-untyped]
import orjson
from starlette.requests import Request
from starlette.responses import Response

from pixel_server.core import channels
from pixel_server.core.http import json_response
from pixel_server.core.settings import LANGS, Site
from pixel_server.core.state import State

PIXEL_PATH = Path(__file__).resolve().parent / "static" / "p.js"
log = logging.getLogger("jobpixel")
BANNER_DIR = Path(__file__).resolve().parent.parent / "consent" / "banner"

SCRIPT_CACHE = "public, max-age=3600, stale-while-revalidate=86400"
CONFIG_CACHE = "public, max-age=300"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gz: bytes
    etag: str
    media_type: str
    cache: str

    @classmethod
    def build(cls, body: bytes, media_type: str, cache: str) -> Asset:
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        return cls(body, gzip.compress(body, 9, mtime=0), etag, media_type, cache)

    def respond(self, request: Request, extra: dict[str, str] | None = None) -> Response:
        headers = {
            "ETag": self.etag,
            "Cache-Control": self.cache,
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "cross-origin",
            "Vary": "Accept-Encoding",
            **(extra or {}),
        }
        if self.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(self.gz, media_type=self.media_type, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def _etags(value: str) -> set[str]:
    return {v.strip().removeprefix("W/") for v in value.split(",") if v.strip()}


def build_is_fresh(source: Path) -> bool:
    """Whether ``x.min.js`` was built from this ``x.js``: its manifest ``x.min.json`` holds the source's
    SHA-256."""
    built, manifest = source.with_suffix(".min.js"), source.with_suffix(".min.json")
    if not (built.exists() and manifest.exists()):
        return False
    recorded = json.loads(manifest.read_text(encoding="utf-8")).get("source_sha256")
    return bool(recorded == hashlib.sha256(source.read_bytes()).hexdigest())


def built_js(source: Path) -> bytes:
    """A script as served: the terser build of the readable source (``make pixel``).

    A source edited without a rebuild is served through tdewolff/minify instead, with a warning, so
    an edit shows at the next start; it is larger (over its budget) and a test fails until
    ``make pixel`` is run.
    """
    if build_is_fresh(source):
        return source.with_suffix(".min.js").read_bytes()
    log.warning(
        "%s changed since %s was built: serving it minified by tdewolff; run `make pixel`",
        source,
        source.with_suffix(".min.js").name,
    )
    return minify_js(source.read_text(encoding="utf-8"))


def pixel_bundle(pixel_path: Path = PIXEL_PATH) -> bytes:
    """``p.js`` as served: the terser build ``static/p.min.js``."""
    return built_js(pixel_path)


def banner_bundle(banner_dir: Path = BANNER_DIR) -> bytes:
    """``window.__jpb={css, texts}`` + the banner's script (its terser build ``banner.min.js``): one
    request."""
    css = minify.string("text/css", (banner_dir / "banner.css").read_text(encoding="utf-8"))
    texts = {lang: orjson.loads((banner_dir / "texts" / f"{lang}.json").read_bytes()) for lang in LANGS}
    head = b"window.__jpb=" + orjson.dumps({"css": css, "texts": texts}) + b";"
    return head + built_js(banner_dir / "banner.js")


def minify_js(source: str) -> bytes:
    """The bytes a page downloads for a readable script: tdewolff/minify (PyPI ``tdewolff-minify``).

    It drops comments and whitespace and renames local names; the sources stay as they are read.
    A syntax error in a source fails here, at start-up, not in a visitor's browser.
    """
    minified: str = minify.string("application/javascript", source)
    return (minified + "\n").encode("utf-8")


class Assets:
    def __init__(self, pixel_path: Path = PIXEL_PATH, banner_dir: Path = BANNER_DIR) -> None:
        self.pixel = Asset.build(pixel_bundle(pixel_path), "text/javascript", SCRIPT_CACHE)
        self.banner = Asset.build(banner_bundle(banner_dir), "text/javascript", SCRIPT_CACHE)


def site_public_config(site: Site, forwarded: Collection[str] = ()) -> dict[str, Any]:
    """The site's public config (/s/{site}.json). `forwarded`: the channels the server forwards for it."""
    return {
        "site": site.id,
        "revision": site.revision,
        "lang": site.lang,
        "consent_days": site.consent_days,
        "policy_url": site.policy_url,
        "ad_pattern": site.ad_pattern,
        "ats_hosts": list(site.ats_hosts),
        "thanks_pattern": site.thanks_pattern,
        "float_button": site.float_button,
        "texts": {lang: dict(t) for lang, t in site.texts.items()},
        "channels": [
            {**channels.public_channel(name, cfg), "server": name in forwarded}
            for name, cfg in site.channels.items()
        ],
    }


async def pixel_js(request: Request) -> Response:
    assets: Assets = request.app.state.assets
    return assets.pixel.respond(request)


async def banner_js(request: Request) -> Response:
    """The pixel imports b.js as a module (``import()``), which the browser fetches in CORS mode."""
    assets: Assets = request.app.state.assets
    return assets.banner.respond(request, {"Access-Control-Allow-Origin": "*"})


async def site_config(request: Request) -> Response:
    state: State = request.app.state.jp
    site = state.settings.sites.get(request.path_params["site"])
    headers = {"Access-Control-Allow-Origin": "*", "Cache-Control": CONFIG_CACHE}
    if site is None:
        return json_response(
            {"error": "unknown_site", "field": "site", "detail": "unknown site"}, 404, headers
        )
    forwarded = state.settings.forwarding.targets.get(site.id, {})
    return json_response(site_public_config(site, forwarded), 200, headers)
