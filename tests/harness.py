"""The test harness: a real jobpixel server on chDB, and a partner site on another origin.

``pixel_server`` runs the real app under uvicorn on a thread of this process
(chDB allows one process per data path, and in-process the tests can reach the
store), on ``http://localhost:PORT``. The partner site is a plain static HTTP
server on ``http://127.0.0.1:PORT2`` — a different host, so cookies and CORS
behave as on a real partner's page. It serves ``tests/browser/pages/<file>``
for any URL whose last path segment is ``<file>`` (``/jobb/4711/ad.html`` →
``pages/ad.html``), with ``{{PIXEL}}`` replaced by the pixel server's origin.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from pixel_server.core import settings as settings_mod
from pixel_server.core.grant import Grant, Grants
from pixel_server.core.settings import Settings
from pixel_server.core.state import State
from pixel_server.web.app import create_app

PAGES = Path(__file__).parent / "browser" / "pages"
SIGNING_KEY = "test-signing-key-0123456789abcdef"
HASH_KEY = "test-hash-key-0123456789abcdef"  # grant: keys the consent log's visitor hash
OPS_TOKEN = "test-ops-token-0123456789abcdef"  # door: /metrics and the full /readyz
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}  # headers of an operator's request
SECRETS = {
    settings_mod.SIGNING_KEYS_ENV: SIGNING_KEY,
    settings_mod.HASH_KEY_ENV: HASH_KEY,
    settings_mod.OPS_TOKEN_ENV: OPS_TOKEN,
}
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)

TEST_CHANNELS = {
    "ga4": {"id": "G-TEST123"},
    "meta": {"id": "1234567890"},
    "linkedin": {"id": "123456"},
    "snapchat": {"id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301"},
    "bidtheatre": {"id": "1234", "conversion": "5678"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_dict(data_dir: Path, origin: str, **site_overrides: Any) -> dict[str, Any]:
    """The test configuration: site ``test`` (no channels) and ``shop`` (all five channels)."""
    base_site: dict[str, Any] = {
        "partner": "acme",
        "origins": [origin],
        "ad_pattern": "/jobb/{ad}/*",  # path templates (core/settings.py: compile_path_template)
        "ats_hosts": ["ats.example.test"],
        "thanks_pattern": "/takk*",
        "policy_url": origin + "/personvern.html",
    }
    test_site = {**base_site, **site_overrides}
    return {
        "server": {"data_dir": str(data_dir)},
        "storage": {"backend": "chdb", "flush_interval_ms": 200},
        "partners": {"acme": {"name": "Acme Rekruttering AS"}},
        "sites": {
            "test": test_site,
            "shop": {**base_site, "float_button": True, "channels": TEST_CHANNELS, **site_overrides},
        },
    }


def make_settings(data_dir: Path, origin: str = "http://127.0.0.1:9", **site_overrides: Any) -> Settings:
    return settings_mod.from_mapping(
        config_dict(data_dir, origin, **site_overrides),
        SECRETS,
        data_dir,
    )


def make_grant(key: str = SIGNING_KEY, **over: Any) -> Grant:
    """grant: a grant signed outside the server (forged with another key, expired, another site…)."""
    now = time.time()
    args: dict[str, Any] = {
        "consent_id": str(uuid.uuid4()),
        "choice_id": str(uuid.uuid4()),
        "site": "test",
        "categories": {"statistics"},
        "revision": 1,
        "issued_at": now,
        "expires_at": now + 182 * 86_400,
    }
    return Grants((key,)).issue(**(args | over))


class PartnerSite:
    """A static server for the partner's job-ad pages (another host than the pixel server)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.pixel_origin = ""
        # issue #11: response headers per page file name (a CSP, a cacheable page for bfcache)
        self.headers: dict[str, dict[str, str]] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = urllib.parse.urlsplit(self.path).path
                name = path.rstrip("/").rsplit("/", 1)[-1] or "index.html"
                file = PAGES / name
                if not file.is_file() or ".." in name:
                    self.send_error(404)
                    return
                body = file.read_bytes().replace(b"{{PIXEL}}", site.pixel_origin.encode())
                self.send_response(200)
                ctype = "text/html; charset=utf-8" if name.endswith(".html") else "text/javascript"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in {"Cache-Control": "no-store", **site.headers.get(name, {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class LiveServer:
    """The real app under uvicorn on a background thread, with helpers for tests."""

    demo = False  # issue #11: a subclass serves the demo pages too

    def __init__(self, data_dir: Path, partner: PartnerSite, **site_overrides: Any) -> None:
        self.data_dir = data_dir
        self.partner = partner
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        partner.pixel_origin = self.url
        self.site_overrides = site_overrides
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app: Any = None

    # -- lifecycle ------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return make_settings(self.data_dir, self.partner.origin, **self.site_overrides)

    def start(self) -> None:
        self.app = create_app(self.settings, demo=self.demo)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", access_log=False
        )
        server = uvicorn.Server(config)
        loop = asyncio.new_event_loop()
        self._server, self._loop = server, loop
        self._thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("jobpixel test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        assert self._thread is not None
        self._thread.join(timeout=30)
        assert self._loop is not None
        self._loop.close()
        self._server = None

    def restart(self, **site_overrides: Any) -> None:
        self.stop()
        self.site_overrides = {**self.site_overrides, **site_overrides}
        self.start()

    # -- helpers ---------------------------------------------------------------
    @property
    def state(self) -> State:
        state: State = self.app.state.jp
        return state

    def origin_page_url(self, path: str) -> str:
        return self.partner.origin + "/" + path.lstrip("/")

    def run(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def flush(self) -> None:
        assert self.state.loader is not None, "store not connected"
        self.run(self.state.loader.flush())

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self.flush()
        assert self.state.store is not None
        return self.state.store.query(sql, params)

    def _select(self, table: str, where: Mapping[str, Any]) -> list[dict[str, Any]]:
        clauses = [f"{k} = {{{k}:String}}" for k in where]  # keys come from test code only
        sql = f"SELECT * FROM ${{db}}.{table} FINAL" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return self.query(sql + " ORDER BY ts", {k: str(v) for k, v in where.items()})

    def events(self, **where: Any) -> list[dict[str, Any]]:
        return self._select("events", where)

    def consent_rows(self, **where: Any) -> list[dict[str, Any]]:
        return self._select("consent_log", where)

    def wait_for_events(
        self, n: int, timeout: float = 10.0, page: Any = None, **where: Any
    ) -> list[dict[str, Any]]:
        """Poll until ``n`` events match. Pass the Playwright ``page`` when a test routes requests:
        Playwright's sync API runs route handlers only while the test is inside a Playwright call,
        so a ``time.sleep`` here would hold the page's requests."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.events(**where)
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            if page is not None:
                page.wait_for_timeout(100)
            else:
                time.sleep(0.1)

    def consent(
        self, site: str = "test", statistics: bool = True, marketing: bool = False, **extra: Any
    ) -> dict[str, Any]:
        granted = (
            ["necessary"] + (["statistics"] if statistics else []) + (["marketing"] if marketing else [])
        )
        body = {
            "site": site,
            "consent_id": str(uuid.uuid4()),
            "choice_id": str(uuid.uuid4()),
            "action": "accept_all" if statistics and marketing else "custom",
            "granted": granted,
            "denied": [c for c in ("statistics", "marketing") if c not in granted],
            "revision": 1,
            "lang": "nb",
            "gpc": False,
            "layer": 1,
            **extra,
        }
        r = httpx.post(
            self.url + "/consent",
            content=json.dumps(body),
            headers={"Content-Type": "text/plain", "Origin": self.partner.origin, "User-Agent": DESKTOP_UA},
        )
        r.raise_for_status()
        return {**body, **r.json()}

    def grant(
        self, statistics: bool = True, marketing: bool = False, site: str = "test"
    ) -> list[dict[str, Any]]:
        """Cookies (for ``context.add_cookies``) of a visitor who already chose on the partner site."""
        res = self.consent(site, statistics, marketing)
        now = int(time.time() * 1000)
        value = {
            "v": 1,
            "id": res["consent_id"],
            "s": int(statistics),
            "m": int(marketing),
            "rev": res["revision"],
            "first": now,
            "last": now,
            "exp": now + 182 * 86_400_000,
            "gpc": 0,
        }
        cookies = [
            {
                "name": "jobpixel_consent",
                "value": urllib.parse.quote(json.dumps(value, separators=(",", ":")), safe=""),
                "url": self.partner.origin,
            }
        ]
        if res["token"]:
            cookies.append({"name": "jobpixel_vid", "value": res["token"], "url": self.partner.origin})
        return cookies


CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


# Issue #11: the readable p.js (bfcache, prerender, fetch fallback, nonce, rAF) within 2,000 B through
# terser (make pixel); see README "Figures".
PIXEL_BUDGET_GZ = 2000
BANNER_BUDGET_GZ = 8000


def script_sizes() -> dict[str, int]:
    """gzip -9 sizes of what the page downloads: the pixel and the banner bundle, as served."""
    import gzip

    from pixel_server.web.assets import banner_bundle, pixel_bundle

    return {
        "p.js": len(gzip.compress(pixel_bundle(), 9)),
        "b.js": len(gzip.compress(banner_bundle(), 9)),
    }


def run_async(coro: Any) -> Any:
    """``asyncio.run`` on a fresh thread: Playwright's sync API keeps a loop running in the main thread."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# -- the ad channels' stand-in (branch channels) ------------------------------------------------------------
class Recorded:
    """One request the recording server received, and what it answered."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes, status: int) -> None:
        parts = urllib.parse.urlsplit(target)
        self.method = method
        self.path = parts.path
        self.raw_query = parts.query
        self.query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers  # lower-cased names
        self.body = body
        self.status = status

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(self.body.decode(), keep_blank_values=True)

    def __repr__(self) -> str:
        return f"<{self.method} {self.path}?{self.raw_query} → {self.status}>"


class RecordingServer:
    """A local HTTP server standing in for the ad channels' APIs (the only thing tests may stand in for).

    It records every request (method, path, query, headers, body) and answers ``status``/``body``;
    ``fail(n, status)`` makes the next ``n`` requests answer ``status`` first (500 by default);
    ``hang(n)`` makes the next ``n`` requests wait ``hang_s`` before answering (client timeouts).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Recorded] = []
        self.status = 200
        self.body = b'{"ok":true}'
        self.content_type = "application/json"
        self._failures: list[tuple[int, bytes, dict[str, str]]] = []
        self._hangs = 0
        self.hang_s = 2.0
        self.in_flight = 0  # requests being answered now, and the most at once
        self.max_in_flight = 0
        self.started: list[float] = []  # time.monotonic() each request arrived
        self._lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with rec._lock:
                    rec.in_flight += 1
                    rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
                    rec.started.append(time.monotonic())
                    hang = rec._hangs > 0
                    rec._hangs -= 1 if hang else 0
                    if rec._failures:
                        status, answer, extra = rec._failures.pop(0)
                    else:
                        status, answer, extra = rec.status, rec.body, {}
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    rec.requests.append(Recorded(self.command, self.path, headers, body, status))
                if hang:
                    time.sleep(rec.hang_s)
                with rec._lock:
                    rec.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Type", rec.content_type)
                self.send_header("Content-Length", str(len(answer)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_GET = do_PUT = _handle  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def fail(
        self, n: int, status: int = 500, body: bytes = b'{"error":"unavailable"}', **headers: str
    ) -> None:
        with self._lock:
            self._failures += [(status, body, dict(headers))] * n

    def recover(self) -> None:
        """Forget the failures still to come: answer ``status`` from now on."""
        with self._lock:
            self._failures.clear()
            self._hangs = 0

    def hang(self, n: int, seconds: float = 2.0) -> None:
        with self._lock:
            self._hangs, self.hang_s = n, seconds

    def ok(self) -> list[Recorded]:
        """The requests answered 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
