"""The pixel and the banner as real career sites deploy them (issue #11), in Chromium.

Page and pixel are on different origins. The partner site serves each page with the headers a
test sets (``PartnerSite.headers``): a strict Content-Security-Policy, or a cacheable page for
the back/forward cache. Requests to third-party hosts are answered by ``third_party``.

Chromium's speculation-rules prerendering is not driven here: a prerendered page is simulated the
way the pixel sees one, ``document.prerendering`` true until a ``prerenderingchange`` event.
Playwright launches Chromium with ``--disable-back-forward-cache``; the bfcache test launches its
own browser without that switch and checks that the page really came back from the cache.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserType, ConsoleMessage, Page, expect

from pixel_server.core import settings as settings_mod
from pixel_server.core.settings import Settings
from pixel_server.web import csp
from tests.browser.conftest import ThirdParty
from tests.browser.test_consent_flow import choose, cookies
from tests.harness import DESKTOP_UA, SECRETS, LiveServer, PartnerSite

NONCE = "n0nce-11"


def own_favicon(policy: str) -> str:
    """The page's own <link rel=icon href="data:,"> is allowed by the page's img-src."""
    return policy.replace("img-src 'self'", "img-src 'self' data:", 1)


# Every CSP violation and console error the page sees, from the first script on.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(
  e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile));
"""


def wait_events(page: Page, server: LiveServer, n: int, timeout: float = 10.0, **where: Any) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = server.events(**where)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        page.wait_for_timeout(100)


class Console:
    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._on)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _on(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)


@pytest.fixture
def headers(pixel_server: LiveServer) -> Iterator[dict[str, dict[str, str]]]:
    yield pixel_server.partner.headers
    pixel_server.partner.headers.clear()


def site_csp(server: LiveServer, site: str) -> str:
    """The policy ``jobpixel check-config`` prints for the site (tests/web/test_csp.py pins that)."""
    return csp.partner_csp(server.settings.sites[site], server.url)


def assert_banner_styled_and_fixed(page: Page) -> None:
    dialog = page.locator("dialog.jpb-1")
    expect(dialog).to_be_visible()
    style = dialog.evaluate("d => [getComputedStyle(d).position, getComputedStyle(d).zIndex]")
    assert style[0] == "fixed" and int(style[1]) > 1000, style
    # laid out over the page, not in its flow: the page did not scroll to it
    assert page.evaluate("scrollY") == 0


def test_strict_csp_career_page(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty, headers: dict[str, dict[str, str]]
) -> None:
    policy = site_csp(pixel_server, "test")
    assert "script-src 'self' " + pixel_server.url in policy and "style-src 'self'" in policy
    headers["career_strict.html"] = {"Content-Security-Policy": own_favicon(policy)}
    console = Console(page)
    page.add_init_script(WATCH_VIOLATIONS)
    page.goto(pixel_server.origin_page_url("jobb/4711/career_strict.html"))
    assert_banner_styled_and_fixed(page)
    # no focus stolen from the page's autofocus field; the banner is the first tab stop
    assert page.evaluate("document.activeElement.id") == "search"
    assert page.evaluate("document.body.firstElementChild.matches('dialog.jpb-1')")
    expect(page.locator(".jpb-v[role=status]")).to_have_text("Personvern og informasjonskapsler")

    choose(page, "Godta alle")
    pv = wait_events(page, pixel_server, 1, name="pageview")
    assert len(pv) == 1 and pv[0]["ad_id"] == "4711"
    page.click("#apply")
    assert len(wait_events(page, pixel_server, 1, name="apply_click")) == 1
    assert page.evaluate("window.__violations") == []
    assert console.errors == []


def test_nonce_only_csp_with_trusted_types(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty, headers: dict[str, dict[str, str]]
) -> None:
    host_policy = site_csp(pixel_server, "shop")
    # the page's script-src is its nonce alone; the rest as check-config printed it
    rest = [d for d in host_policy.split("; ") if not d.startswith("script-src")]
    policy = "; ".join([*rest, f"script-src 'nonce-{NONCE}'", "require-trusted-types-for 'script'"])
    policy = own_favicon(policy)
    headers["career_nonce.html"] = {"Content-Security-Policy": policy}
    console = Console(page)
    page.add_init_script(WATCH_VIOLATIONS)
    page.goto(pixel_server.origin_page_url("jobb/4711/career_nonce.html"))
    assert_banner_styled_and_fixed(page)
    assert page.evaluate("window.gatedRan") is None

    choose(page, "Godta alle")
    assert len(wait_events(page, pixel_server, 1, name="pageview")) == 1
    page.wait_for_function("window.gatedRan === true")  # the gated script ran, with the page's nonce
    tags = page.evaluate(
        "[...document.scripts].filter(s => s.src && !s.src.startsWith(location.origin))"
        ".map(s => [new URL(s.src).host, s.nonce])"
    )
    tag_hosts = {urllib.parse.urlsplit(u).hostname for u in third_party.requests}
    assert {"www.googletagmanager.com", "connect.facebook.net", "sc-static.net"} <= tag_hosts
    nonces = dict(tags)
    for host in ("www.googletagmanager.com", "connect.facebook.net", "snap.licdn.com", "sc-static.net"):
        assert nonces.get(host) == NONCE, tags
    assert nonces[urllib.parse.urlsplit(pixel_server.url).netloc] == NONCE  # b.js and p.js
    assert page.evaluate("window.__violations") == []
    assert console.errors == []


def test_the_nonce_policy_is_needed_for_the_test_to_pass(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty, headers: dict[str, dict[str, str]]
) -> None:
    """The CSP tests can fail: the same page with a wrong nonce shows no banner and records violations."""
    policy = "script-src 'nonce-wrong'; require-trusted-types-for 'script'"
    headers["career_nonce.html"] = {"Content-Security-Policy": policy}
    page.add_init_script(WATCH_VIOLATIONS)
    page.goto(pixel_server.origin_page_url("jobb/4711/career_nonce.html"))
    page.wait_for_function("window.__violations.length > 0")
    assert page.locator("dialog.jpb-1").count() == 0


def test_back_and_forward_through_two_ads_are_pageviews(
    browser_type: BrowserType,
    browser_type_launch_args: dict[str, Any],
    pixel_server: LiveServer,
    headers: dict[str, dict[str, str]],
) -> None:
    headers["pixel_ad.html"] = {"Cache-Control": "private, max-age=0"}  # no-store keeps pages out of bfcache
    browser = browser_type.launch(
        **browser_type_launch_args, ignore_default_args=["--disable-back-forward-cache"]
    )
    try:
        context = browser.new_context(user_agent=DESKTOP_UA, locale="nb-NO")
        context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
        page = context.new_page()
        page.add_init_script(
            "addEventListener('pageshow', e => { if (e.persisted) window.__restored = true; })"
        )
        first = pixel_server.origin_page_url("jobb/1/pixel_ad.html")
        second = pixel_server.origin_page_url("jobb/2/pixel_ad.html")
        page.goto(first)
        wait_events(page, pixel_server, 1, name="pageview")
        page.goto(second)
        wait_events(page, pixel_server, 2, name="pageview")
        page.go_back(wait_until="commit")  # a page restored from the bfcache fires no load
        page.wait_for_function("window.__restored === true")
        assert page.url == first and page.evaluate("window.__restored") is True  # from the bfcache
        wait_events(page, pixel_server, 3, name="pageview")
        page.evaluate("window.__restored = false")
        page.go_forward(wait_until="commit")
        page.wait_for_function("window.__restored === true")
        assert page.url == second and page.evaluate("window.__restored") is True
        views = wait_events(page, pixel_server, 4, name="pageview")
        assert [v["ad_id"] for v in views] == ["1", "2", "1", "2"]
        assert len({v["event_id"] for v in views}) == 4
        # engagement after a restore points at the new pageview, never the one before
        page.mouse.wheel(0, 900)
        page.wait_for_function("scrollY > 0")
        page.evaluate(
            """() => {
              Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
              Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
              document.dispatchEvent(new Event('visibilitychange'));
            }"""
        )
        engaged = wait_events(page, pixel_server, 1, name="engagement", pageview_id=views[3]["event_id"])
        assert engaged, "no engagement for the restored pageview"
        context.close()
    finally:
        browser.close()


PRERENDERING = """
window.__prerendering = true;
Object.defineProperty(Document.prototype, 'prerendering',
  {configurable: true, get: () => window.__prerendering});
"""


def test_a_prerendered_page_sends_nothing_until_shown(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    page.context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url))
    page.add_init_script(PRERENDERING)
    page.goto(pixel_server.origin_page_url("jobb/4711/pixel_ad.html"))
    page.wait_for_function("window.__jpcfg")
    page.wait_for_timeout(500)
    assert not [u for u in sent if u.endswith(("/collect", "/b.js", "/consent"))]
    assert pixel_server.events() == []
    # shown: now it counts
    page.evaluate("window.__prerendering = false; document.dispatchEvent(new Event('prerenderingchange'))")
    assert len(wait_events(page, pixel_server, 1, name="pageview")) == 1


def test_a_background_tab_counts_from_its_first_visible(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    page.context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    page.add_init_script(
        """Object.defineProperty(document, 'hidden', {configurable: true, get: () => !window.__seen});
        Object.defineProperty(document, 'visibilityState', {configurable: true,
          get: () => window.__seen ? 'visible' : 'hidden'});"""
    )
    page.goto(pixel_server.origin_page_url("jobb/4711/pixel_ad.html"))
    page.wait_for_function("window.__jpcfg")
    page.wait_for_timeout(500)
    assert pixel_server.events() == []
    page.evaluate("window.__seen = true; document.dispatchEvent(new Event('visibilitychange'))")
    assert len(wait_events(page, pixel_server, 1, name="pageview")) == 1


@pytest.mark.parametrize(
    "stub",
    [
        "Object.defineProperty(Navigator.prototype, 'sendBeacon', {configurable: true, value: () => false})",
        "delete Navigator.prototype.sendBeacon",
    ],
    ids=["sendBeacon-refuses", "sendBeacon-missing"],
)
def test_events_arrive_by_fetch_keepalive_without_sendbeacon(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty, stub: str
) -> None:
    page.context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    collects: list[tuple[str, str]] = []
    page.on("request", lambda r: r.url.endswith("/collect") and collects.append((r.resource_type, r.method)))
    page.add_init_script(stub)
    page.goto(pixel_server.origin_page_url("jobb/4711/pixel_ad.html"))
    pv = wait_events(page, pixel_server, 1, name="pageview")
    assert len(pv) == 1
    page.mouse.wheel(0, 900)
    page.wait_for_function("scrollY > 0")
    # hidden: the engagement goes out (not on unload: Playwright's unload beacons say HeadlessChrome)
    page.evaluate(
        """() => {
          Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
          Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    eng = wait_events(page, pixel_server, 1, name="engagement")
    assert len(eng) == 1 and eng[0]["pageview_id"] == pv[0]["event_id"]
    assert collects and all(c == ("fetch", "POST") for c in collects), collects


def test_two_copies_of_the_tag(page: Page, pixel_server: LiveServer, third_party: ThirdParty) -> None:
    page.goto(pixel_server.origin_page_url("jobb/4711/career_twice.html"))
    choose(page, "Godta alle")
    # a tag manager firing the tag again after the choice
    page.evaluate(
        """src => new Promise(r => { const s = document.createElement('script');
           s.src = src; s.dataset.site = 'test'; s.onload = r; document.head.append(s); })""",
        pixel_server.url + "/p.js?late=1",
    )
    assert len(wait_events(page, pixel_server, 1, name="pageview")) == 1
    page.wait_for_timeout(300)
    assert len(pixel_server.events(name="pageview")) == 1
    state = page.evaluate(
        """() => {
          const state = {};
          let defaults = 0;
          for (const e of dataLayer) {
            if (e[0] !== 'consent') continue;
            if (e[1] === 'default') defaults++;
            Object.assign(state, e[2]);
          }
          delete state.wait_for_update;
          return [defaults, state];
        }"""
    )
    assert state == [
        1,
        dict.fromkeys(["ad_storage", "ad_user_data", "ad_personalization", "analytics_storage"], "granted"),
    ]


def test_withdrawal_leaves_the_pages_own_cookies(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    page.context.add_cookies(pixel_server.grant(statistics=True, marketing=True, site="shop"))  # type: ignore[arg-type]
    origin = pixel_server.partner.origin
    own = {"_ga_OWN": "GS1.own", "li_at": "own"}
    ours = {
        "_ga": "GA1.1",
        "_ga_TEST123": "GS1.1",
        "_gid": "GA1.2",
        "_fbp": "fb.1",
        "li_fat_id": "x",
        "_scid": "s",
        "_sctr": "t",
    }
    page.context.add_cookies([{"name": k, "value": v, "url": origin} for k, v in {**own, **ours}.items()])
    page.goto(pixel_server.origin_page_url("jobb/4711/banner_shop.html"))
    page.wait_for_function("window.__jpbanner && window.__jpbanner.state.started")
    page.click("#settings")
    page.get_by_role("switch", name="Markedsføring").uncheck()
    choose(page, "Lagre valg")
    left = cookies(page.context)
    assert {k: left.get(k) for k in own} == own
    assert not set(ours) & set(left), left


def test_channel_cookie_lifetimes_shown_are_the_ones_a_browser_keeps(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    page.goto(pixel_server.origin_page_url("jobb/4711/banner_shop.html"))
    page.click("#settings")
    page.locator("details summary").click()
    listed = page.locator("details").inner_text()
    assert "_ga (400 dager)" in listed and "730" not in listed
    # the statistics cookie: the consent's lifetime, as set
    statistics = page.locator("#jpb-statistics-d").inner_text()
    assert "jobpixel_vid, 182 dager" in statistics and "13" not in statistics


class DemoServer(LiveServer):
    """``jobpixel demo``'s app and config, on a free port."""

    demo = True

    @property
    def settings(self) -> Settings:
        import tomllib

        from pixel_server.cli import DEMO_CONFIG

        config = tomllib.loads(DEMO_CONFIG.read_text())
        config["server"] = {"data_dir": str(self.data_dir)}
        config["sites"]["demo"]["origins"] = [self.url, f"http://127.0.0.1:{self.port}"]
        return settings_mod.from_mapping(config, SECRETS, self.data_dir)


def test_the_demo_page_logs_no_console_error(page: Page, tmp_path: Path, partner_site: PartnerSite) -> None:
    server = DemoServer(tmp_path / "demo", partner_site)
    server.start()
    try:
        console = Console(page)
        failed: list[str] = []
        page.on("response", lambda r: r.status >= 400 and failed.append(r.url))
        page.goto(server.url + "/demo/")
        expect(page.locator("dialog.jpb-1")).to_be_visible()
        page.get_by_role("button", name="Avvis alle", exact=True).click()
        expect(page.locator(".jpb-f")).to_be_visible()  # the float button after a choice
        page.wait_for_timeout(300)
        assert console.errors == [] and failed == []
    finally:
        server.stop()


def test_input_and_scroll_work_once_per_animation_frame(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    """A burst of scroll and pointermove events costs one layout read and one clock tick per frame."""
    page.context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    page.goto(pixel_server.origin_page_url("jobb/4711/pixel_ad.html"))
    wait_events(page, pixel_server, 1, name="pageview")
    calls = page.evaluate(
        """() => new Promise(resolve => {
          const count = {rect: 0, focus: 0};
          const rect = Element.prototype.getBoundingClientRect;
          Element.prototype.getBoundingClientRect = function () { count.rect++; return rect.call(this); };
          const hasFocus = Document.prototype.hasFocus;
          Document.prototype.hasFocus = function () { count.focus++; return hasFocus.call(this); };
          for (let i = 0; i < 100; i++) {
            dispatchEvent(new Event('scroll'));
            dispatchEvent(new PointerEvent('pointermove'));
          }
          const during = {...count};
          requestAnimationFrame(() => requestAnimationFrame(() => resolve([during, count])));
        })"""
    )
    during, after = calls
    assert during == {"rect": 0, "focus": 0}  # nothing done in the event handlers themselves
    assert 1 <= after["rect"] <= 2 and 1 <= after["focus"] <= 2, after


def test_an_apply_click_before_the_config_arrives_is_counted(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    page.context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    held: list[Any] = []
    page.route("**/s/test.json", lambda route: held.append(route))
    page.goto(pixel_server.origin_page_url("jobb/4711/pixel_ad.html"))
    page.wait_for_function("window.jobpixel && window.jobpixel.jp")
    page.click("#apply")
    while not held:
        page.wait_for_timeout(50)
    assert pixel_server.events() == []
    held[0].continue_()
    (click,) = wait_events(page, pixel_server, 1, name="apply_click")
    (pv,) = wait_events(page, pixel_server, 1, name="pageview")
    assert click["pageview_id"] == pv["event_id"]


def test_only_the_first_1024_characters_of_the_path_are_matched(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    page.context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    near = "/jobb/77/" + "a" * 900 + "/pixel_ad.html"
    far = "/" + "a" * 1100 + "/jobb/88/pixel_ad.html"  # the ad id lies past the first 1,024 characters
    page.goto(pixel_server.origin_page_url(near))
    wait_events(page, pixel_server, 1, name="pageview")
    page.goto(pixel_server.origin_page_url(far))
    views = wait_events(page, pixel_server, 2, name="pageview")
    assert sorted(v["ad_id"] for v in views) == ["", "77"]


def test_a_trusted_types_list_without_jobpixel_does_not_stop_the_banner(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty, headers: dict[str, dict[str, str]]
) -> None:
    """A page that lists its own policies but does not require Trusted Types: plain strings go on."""
    policy = own_favicon(site_csp(pixel_server, "test")) + "; trusted-types its-own"
    headers["career_strict.html"] = {"Content-Security-Policy": policy}
    page.goto(pixel_server.origin_page_url("jobb/4711/career_strict.html"))
    assert_banner_styled_and_fixed(page)


def test_a_pageview_the_browser_did_not_take_is_not_the_pageview_of_later_events(
    page: Page, pixel_server: LiveServer, third_party: ThirdParty
) -> None:
    """sendBeacon refuses and fetch throws for the pageview: later events carry no pageview_id."""
    page.context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    page.add_init_script(
        """Object.defineProperty(Navigator.prototype, 'sendBeacon', {configurable: true, value: () => false});
        const realFetch = window.fetch;
        window.__refuse = true;
        window.fetch = function (url, init) {
          if (window.__refuse && String(url).endsWith('/collect')) throw new TypeError('refused');
          return realFetch.apply(this, arguments);
        };"""
    )
    page.goto(pixel_server.origin_page_url("jobb/4711/pixel_ad.html"))
    page.wait_for_function("window.__jpcfg")
    page.wait_for_timeout(300)
    page.evaluate("window.__refuse = false; jobpixel('track', 'after_refusal')")
    (event,) = wait_events(page, pixel_server, 1, name="after_refusal")
    assert event["pageview_id"] is None
    assert pixel_server.events(name="pageview") == []
