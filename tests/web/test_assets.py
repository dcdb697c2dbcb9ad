"""How the scripts and the site config are served."""

from __future__ import annotations

import gzip

import httpx
import pytest

from tests.harness import OPS, LiveServer


@pytest.mark.parametrize("path", ["/p.js", "/b.js"])
def test_script_headers(pixel_server: LiveServer, path: str) -> None:
    r = httpx.get(pixel_server.url + path, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "max-age=" in r.headers["cache-control"]
    assert r.headers["content-encoding"] == "gzip"
    etag = r.headers["etag"]
    again = httpx.get(pixel_server.url + path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    plain = httpx.get(pixel_server.url + path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(gzip.compress(plain.content)) == r.content  # same script either way


def test_site_config_is_public_and_complete(pixel_server: LiveServer) -> None:
    r = httpx.get(pixel_server.url + "/s/shop.json")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    cfg = r.json()
    assert cfg["site"] == "shop" and cfg["revision"] == 1 and cfg["float_button"] is True
    assert cfg["ad_pattern"] == "^/jobb/([^/?#]+)/.*" and cfg["ats_hosts"] == ["ats.example.test"]
    assert {c["id"] for c in cfg["channels"]} == {"ga4", "meta", "linkedin", "snapchat", "bidtheatre"}
    for c in cfg["channels"]:
        assert (
            c["processor"]
            and c["privacy_url"].startswith("https://")
            and c["tag"]["src"].startswith("https://")
        )
    assert httpx.get(pixel_server.url + "/s/nope.json").status_code == 404


def test_health_ready_metrics(pixel_server: LiveServer) -> None:
    assert httpx.get(pixel_server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(pixel_server.url + "/readyz", headers=OPS)
    assert ready.status_code == 200
    assert ready.json()["store"] == "ok" and ready.json()["spool_rows"] == 0
    metrics = httpx.get(pixel_server.url + "/metrics", headers=OPS).text
    for name in (
        "jobpixel_events_accepted",
        "jobpixel_events_dropped_total",
        "jobpixel_spool_rows",
        "jobpixel_flush_seconds",
        "jobpixel_flush_batch_rows",
        "jobpixel_spool_commit_seconds",
    ):
        assert name in metrics


def test_served_scripts_are_the_readable_sources_through_the_minifier(pixel_server: LiveServer) -> None:
    """What a page downloads is the source through a minifier: p.js and the banner's script built by
    terser (checked in, each manifest naming the source's hash). No hand golfing."""
    from pixel_server.web.assets import BANNER_DIR, PIXEL_PATH, build_is_fresh

    source = PIXEL_PATH.read_text()
    served = httpx.get(pixel_server.url + "/p.js").text
    assert build_is_fresh(PIXEL_PATH)
    assert served == PIXEL_PATH.with_suffix(".min.js").read_text()
    assert "/**" not in served and len(served) < len(source) / 3
    assert "@typedef {Object} PixelState" in source  # the readable source documents its state
    banner = httpx.get(pixel_server.url + "/b.js").text
    assert banner.startswith("window.__jpb=")
    assert build_is_fresh(BANNER_DIR / "banner.js")
    assert banner.endswith(";" + (BANNER_DIR / "banner.min.js").read_text())
    assert "/**" not in banner


def test_a_syntax_error_in_a_source_fails_at_start_up() -> None:
    import pytest

    from pixel_server.web.assets import minify_js

    assert minify_js("const answer = 6 * 7; // why\n") == b"const answer=6*7\n"
    with pytest.raises(Exception, match="(?i)unexpected|expected"):
        minify_js("const = ;")
