"""The pixel (static/js/p.js, issue #3) in real Chromium against the real server.

Visibility cannot be changed in headless Chromium (every tab stays "visible"),
so a hidden tab is emulated the way the pixel sees one: ``document.hidden`` /
``visibilityState`` overridden and a real ``visibilitychange`` dispatched.
Focus loss is real: CDP ``Emulation.setFocusEmulationEnabled`` off makes
Chromium blur the window and ``document.hasFocus()`` false. Time is
Playwright's fake clock, so engaged-time figures are exact and no test sleeps.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Error, Page, Request, Route

from tests.browser.conftest import ThirdParty
from tests.harness import LiveServer

AD_PATH = "/jobb/4711/pixel_ad.html"
T0 = 1_790_000_000  # the fake clock's start, epoch seconds

SET_HIDDEN = """hidden => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  const state = hidden ? "hidden" : "visible";
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
  document.dispatchEvent(new Event("visibilitychange"));
}"""

# A stand-in for the banner (issue #4), so these tests exercise the pixel's side
# of the contract only: it records whether __jpopen was set when it loaded.
FAKE_BANNER = """window.__bannerLoads = (window.__bannerLoads || 0) + 1;
window.__openedOnLoad = window.__jpopen;
window.__jpbanner = {open: function () { window.__opens = (window.__opens || 0) + 1; }};"""


def fulfill_fake_banner(route: Route) -> None:
    """Answer the pixel's import of b.js with the stand-in (CORS: a module fetch needs it)."""
    route.fulfill(
        content_type="text/javascript", body=FAKE_BANNER, headers={"Access-Control-Allow-Origin": "*"}
    )


@dataclass
class Watch:
    """Every request the page makes, and every uncaught error in it."""

    requests: list[Request] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)

    def collects(self) -> list[Request]:
        return [r for r in self.requests if r.url.endswith("/collect")]

    def banner_loads(self) -> list[Request]:
        return [r for r in self.requests if r.url.endswith("/b.js")]


@pytest.fixture
def watch(page: Page) -> Iterator[Watch]:
    w = Watch()
    page.on("request", lambda r: w.requests.append(r))
    page.on("pageerror", lambda e: w.errors.append(e))
    page.route("**/b.js", fulfill_fake_banner)
    yield w


def set_hidden(page: Page, hidden: bool) -> None:
    page.evaluate(SET_HIDDEN, hidden)


def dispatch_consent(page: Page, **detail: bool) -> None:
    """The banner's announcement after a choice (ARCHITECTURE.md, "Pixel ↔ banner")."""
    page.evaluate("d => dispatchEvent(new CustomEvent('jobpixel:consent', {detail: d}))", detail)


def set_focus(page: Page, focused: bool) -> None:
    """Real focus loss: with Playwright's focus emulation off, another tab in front blurs this one."""
    cdp = page.context.new_cdp_session(page)
    if focused:
        page.bring_to_front()
        cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
    else:
        cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
        page.context.new_page().bring_to_front()
    for _ in range(100):  # not wait_for_function: it polls on rAF, which a paused fake clock stops
        if page.evaluate("document.hasFocus()") == focused:
            return
        page.wait_for_timeout(20)
    raise AssertionError(f"document.hasFocus() did not become {focused}")


def wait_events(
    page: Page, server: LiveServer, n: int, timeout: float = 10.0, **where: Any
) -> list[dict[str, Any]]:
    """Polls the store until n events match. Waits through Playwright, not time.sleep: with the
    sync API, route handlers (third_party, the fake banner) only run while Playwright is called."""
    deadline = time.monotonic() + timeout
    while True:
        rows = server.events(**where)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        page.wait_for_timeout(50)


def one(rows: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(rows) == 1, rows
    return rows[0]


def settle(page: Page) -> None:
    """Waits a beat for beacons in flight (a negative check has nothing to poll for)."""
    page.evaluate("0")
    page.wait_for_timeout(300)


def is_uuid(value: Any) -> bool:
    return uuid.UUID(str(value)).version == 4


def open_ad(
    page: Page, server: LiveServer, context: BrowserContext, path: str = AD_PATH, **kw: Any
) -> dict[str, Any]:
    """A visitor who already consented to statistics opens the ad; returns the stored pageview."""
    context.add_cookies(server.grant())  # type: ignore[arg-type]
    page.goto(server.origin_page_url(path), **kw)
    return one(wait_events(page, server, 1, name="pageview"))


# -- what arrives ---------------------------------------------------------------------------------


def test_pageview_and_engagement_arrive_with_site_ad_url_referrer(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    referrer = "https://www.finn.no/job/fulltime/search.html?q=utvikler"
    pv = open_ad(page, pixel_server, context, referer=referrer)
    url = pixel_server.origin_page_url(AD_PATH)
    stored_referrer = referrer.split("?")[0]  # scheme://host/path only (issue #7)
    assert (pv["site_id"], pv["ad_id"], pv["url"], pv["referrer"]) == ("test", "4711", url, stored_referrer)
    assert is_uuid(pv["event_id"]) and pv["pageview_id"] is None

    # A call queued by the page before p.js loaded is replayed once the config is in.
    queued = one(wait_events(page, pixel_server, 1, name="queued_before_load"))
    assert queued["props"] == {"from": "stub"} and queued["pageview_id"] == pv["event_id"]

    page.mouse.wheel(0, 900)  # a new max scroll depth: engagement is due on hide
    page.wait_for_function("scrollY > 0")
    set_hidden(page, True)
    eng = one(wait_events(page, pixel_server, 1, name="engagement"))
    assert (eng["site_id"], eng["ad_id"], eng["url"], eng["referrer"]) == (
        "test",
        "4711",
        url,
        stored_referrer,
    )
    assert eng["pageview_id"] == pv["event_id"] and eng["event_id"] != pv["event_id"]
    assert eng["visitor_id"] == pv["visitor_id"]
    assert eng["scroll_pct"] > 0 and eng["activity"] >= 1
    shifts = page.evaluate(
        """() => new Promise(r => {
          const observer = new PerformanceObserver(l => r(l.getEntries().length));
          observer.observe({type: "layout-shift", buffered: true});
          setTimeout(() => r(0), 100);
        })"""
    )
    assert shifts == 0  # the pixel adds nothing visible
    assert watch.errors == []


def test_consent_mode_defaults_are_pushed_first_as_arguments(
    page: Page, pixel_server: LiveServer, watch: Watch
) -> None:
    page.goto(pixel_server.origin_page_url(AD_PATH))
    page.wait_for_function("window.jobpixel && jobpixel.jp")
    first = page.evaluate(
        "[Object.prototype.toString.call(dataLayer[0]), JSON.stringify(Array.from(dataLayer[0]))]"
    )
    assert first[0] == "[object Arguments]"
    assert first[1] == (
        '["consent","default",{"ad_storage":"denied","ad_user_data":"denied",'
        '"ad_personalization":"denied","analytics_storage":"denied","wait_for_update":500}]'
    )


def test_engaged_time_counts_only_visible_focused_active_time(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    page.clock.install(time=T0)
    page.clock.pause_at(T0 + 1)
    open_ad(page, pixel_server, context)
    x = iter(range(10, 1000, 10))

    def engagements(n: int) -> list[dict[str, Any]]:
        rows = wait_events(page, pixel_server, n, name="engagement")
        assert len(rows) == n, rows
        return sorted(rows, key=lambda r: r["client_ts"])

    # Arriving counts as activity: 4 s visible, focused, within 5 s of it.
    page.clock.run_for(4000)
    set_hidden(page, True)
    assert engagements(1)[0]["engaged_ms"] == 4000

    # A minute in a background tab adds nothing; back (the return is input too), two inputs
    # 2 s apart in the next 5 s window, then 20 s idle: only 5 s after the last input count.
    page.clock.run_for(60_000)
    set_hidden(page, False)
    page.clock.run_for(2000)
    page.mouse.move(next(x), 10)
    page.clock.run_for(2000)
    page.mouse.move(next(x), 10)
    page.clock.run_for(20_000)
    set_hidden(page, True)
    second = engagements(2)[1]
    assert (second["engaged_ms"], second["activity"]) == (2000 + 2000 + 5000, 2)

    # Visible but the window lost focus for 30 s: that time is not counted either.
    set_hidden(page, False)
    page.clock.run_for(2000)
    set_focus(page, False)
    page.clock.run_for(30_000)
    set_focus(page, True)
    page.clock.run_for(2000)
    set_hidden(page, True)
    third = engagements(3)[2]
    assert (third["engaged_ms"], third["activity"]) == (4000, 2)

    # Steady activity keeps it growing: an input every 2 s for 12 s.
    set_hidden(page, False)
    for _ in range(6):
        page.clock.run_for(2000)
        page.mouse.move(next(x), 10)
    set_hidden(page, True)
    fourth = engagements(4)[3]
    assert (fourth["engaged_ms"], fourth["activity"]) == (12_000, 2)

    # Less than 3 s more and no new scroll depth: nothing is sent on hide.
    set_hidden(page, False)
    page.clock.run_for(1000)
    set_hidden(page, True)
    settle(page)
    assert len(pixel_server.events(name="engagement")) == 4
    assert watch.errors == []


@pytest.mark.parametrize(
    ("path", "fraction"),
    [(AD_PATH, 0.5), (AD_PATH, 0.9), ("/jobb/4711/pixel_plain.html", 0.6)],
    ids=["ad-text-half", "ad-text-most", "no-text-element-whole-document"],
)
def test_scroll_depth_of_the_ad_text(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch, path: str, fraction: float
) -> None:
    open_ad(page, pixel_server, context, path)
    # Scroll so the viewport's bottom edge sits at `fraction` of the element, then back up:
    # the maximum is what counts.
    page.evaluate(
        """f => {
          const el = document.querySelector("[data-jobpixel-text]") || document.documentElement;
          const r = el.getBoundingClientRect(), top = r.top + scrollY;
          scrollTo(0, top + f * r.height - innerHeight);
        }""",
        fraction,
    )
    page.wait_for_function("scrollY > 0")
    page.evaluate("scrollTo(0, 0)")
    page.wait_for_function("scrollY === 0")
    set_hidden(page, True)
    eng = one(wait_events(page, pixel_server, 1, name="engagement"))
    assert abs(eng["scroll_pct"] - fraction * 100) <= 5, eng["scroll_pct"]
    assert watch.errors == []


def test_data_ad_wins_over_the_url_pattern(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    assert open_ad(page, pixel_server, context, "/jobb/4711/pixel_plain.html")["ad_id"] == "plain-7"


def test_data_ad_names_the_landing_page_only_and_jobpixel_ad_names_the_next(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    """An SPA: data-ad is the ad of the page the tag was loaded on, not of every path after it; a new
    path takes its ad from ad_pattern, or from jobpixel('ad', id) called before the route changes."""
    assert open_ad(page, pixel_server, context, "/jobb/4711/pixel_plain.html")["ad_id"] == "plain-7"
    page.evaluate("history.pushState({}, '', '/jobb/888/pixel_plain.html')")
    assert wait_events(page, pixel_server, 2, name="pageview")[-1]["ad_id"] == "888"
    page.evaluate("jobpixel('ad', 'spa-9'); history.pushState({}, '', '/stillinger/sykepleier')")
    assert wait_events(page, pixel_server, 3, name="pageview")[-1]["ad_id"] == "spa-9"
    page.evaluate("history.pushState({}, '', '/om-oss')")  # named once: not the ad of every page after
    assert wait_events(page, pixel_server, 4, name="pageview")[-1]["ad_id"] == ""
    page.evaluate("jobpixel('ad', 12345); history.pushState({}, '', '/stillinger/kokk')")  # a number
    assert wait_events(page, pixel_server, 5, name="pageview")[-1]["ad_id"] == "12345"
    # back on the landing path (a query stripped, then history back): data-ad names its ad again
    page.evaluate("history.pushState({}, '', '/jobb/4711/pixel_plain.html?utm_source=x')")
    page.evaluate("history.replaceState({}, '', '/jobb/4711/pixel_plain.html')")
    pvs = wait_events(page, pixel_server, 7, name="pageview")
    assert [p["ad_id"] for p in pvs[-2:]] == ["plain-7", "plain-7"]
    assert watch.errors == []


def test_a_page_left_while_the_banner_is_on_its_way_still_counts_its_pageview(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    """The pixel sends once the banner's import settles; one that hangs must not cost the pageview
    (nor a click waiting for it): hiding or leaving the page makes the pixel ready at once."""
    page.unroute("**/b.js")
    page.route("**/b.js", lambda route: None)  # never answered
    context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    page.goto(pixel_server.origin_page_url(AD_PATH))
    page.wait_for_function("window.__jpkit")  # shown, config in, the import on its way
    page.click("#apply")
    settle(page)
    assert watch.collects() == []  # waiting for the banner
    set_hidden(page, True)
    pv = one(wait_events(page, pixel_server, 1, name="pageview"))
    click = one(wait_events(page, pixel_server, 1, name="apply_click"))
    assert click["pageview_id"] == pv["event_id"]
    assert watch.errors == []


def test_apply_click_ats_link_and_conversion_carry_event_ids(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch, third_party: ThirdParty
) -> None:
    pv = open_ad(page, pixel_server, context)
    page.evaluate("jobpixel('conversion', {channel: 'easy-apply'})")
    conv = one(wait_events(page, pixel_server, 1, name="apply_complete"))
    assert conv["props"] == {"channel": "easy-apply"}

    page.click("#apply")
    page.click("#other")  # any other link is not an apply click
    one(wait_events(page, pixel_server, 1, name="apply_click"))
    page.click("#ats")  # leaves for the ATS: the beacon must survive the navigation
    page.wait_for_url(re.compile(r"^https://ats\.example\.test/"))
    clicks = wait_events(page, pixel_server, 2, name="apply_click")
    assert len(clicks) == 2
    for ev in [conv, *clicks]:
        assert is_uuid(ev["event_id"]) and ev["pageview_id"] == pv["event_id"] and ev["ad_id"] == "4711"
    assert len({pv["event_id"], conv["event_id"], *(c["event_id"] for c in clicks)}) == 4
    assert third_party.hosts() == {"ats.example.test"}
    assert watch.errors == []


def test_event_ids_without_crypto_random_uuid(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    """crypto.randomUUID exists only in secure contexts; plain-http partner pages lack it."""
    page.add_init_script("Object.defineProperty(Crypto.prototype, 'randomUUID', {value: undefined})")
    pv = open_ad(page, pixel_server, context)
    page.click("#apply")
    click = one(wait_events(page, pixel_server, 1, name="apply_click"))
    assert is_uuid(pv["event_id"]) and is_uuid(click["event_id"]) and pv["event_id"] != click["event_id"]


def test_spa_navigation_counts_pages_and_thank_you_url(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    first = open_ad(page, pixel_server, context)
    first_url = pixel_server.origin_page_url(AD_PATH)
    page.mouse.wheel(0, 900)
    page.wait_for_function("scrollY > 0")

    page.evaluate("history.pushState({}, '', '/jobb/777/pixel_ad.html?utm_source=x')")
    eng = one(wait_events(page, pixel_server, 1, name="engagement"))  # the old page's, on leaving it
    assert (eng["pageview_id"], eng["url"], eng["ad_id"]) == (first["event_id"], first_url, "4711")
    pvs = wait_events(page, pixel_server, 2, name="pageview")
    second = pvs[-1]
    assert second["ad_id"] == "777" and second["referrer"] == first_url
    assert second["url"] == pixel_server.origin_page_url("/jobb/777/pixel_ad.html?utm_source=x")

    page.evaluate("history.replaceState({}, '', location.href + '#apply')")  # same page: no pageview
    page.evaluate("history.back()")  # popstate
    pvs = wait_events(page, pixel_server, 3, name="pageview")
    assert [p["ad_id"] for p in pvs] == ["4711", "777", "4711"]

    page.evaluate("history.pushState({}, '', '/takk/pixel_ad.html')")
    done = one(wait_events(page, pixel_server, 1, name="apply_complete"))
    pvs = wait_events(page, pixel_server, 4, name="pageview")
    assert len(pvs) == 4 and done["pageview_id"] == pvs[-1]["event_id"] and done["ad_id"] == ""
    assert watch.errors == []


# -- consent ----------------------------------------------------------------------------------------


def interact(page: Page) -> None:
    """Everything that would send something with consent."""
    page.mouse.wheel(0, 1500)
    page.wait_for_function("scrollY > 0")
    page.evaluate("jobpixel('track', 'custom_event'); jobpixel('conversion', {a: 1})")
    page.click("#apply")
    page.click("#other")
    page.evaluate("history.pushState({}, '', '/jobb/99/pixel_ad.html')")
    set_hidden(page, True)
    page.evaluate("dispatchEvent(new PageTransitionEvent('pagehide'))")
    settle(page)


def stale_token(server: LiveServer) -> list[dict[str, Any]]:
    """Statistics withdrawn (s: 0) but the token cookie left behind: still nothing may be sent."""
    cookies = server.grant()
    cookies[0]["value"] = cookies[0]["value"].replace("%22s%22%3A1", "%22s%22%3A0")
    return cookies


def stale_revision(server: LiveServer) -> list[dict[str, Any]]:
    """Statistics granted under an older banner revision: the banner must ask again first."""
    cookies = server.grant()
    cookies[0]["value"] = cookies[0]["value"].replace("%22rev%22%3A1", "%22rev%22%3A0")
    return cookies


@pytest.mark.parametrize(
    "choice",
    [None, {"statistics": False}, {"statistics": False, "marketing": True}, "stale-token", "stale-revision"],
    ids=["no-choice", "rejected", "marketing-only", "stale-token", "stale-revision"],
)
def test_nothing_is_sent_without_statistics_consent(
    page: Page,
    context: BrowserContext,
    pixel_server: LiveServer,
    watch: Watch,
    third_party: ThirdParty,
    choice: dict[str, bool] | str | None,
) -> None:
    if choice == "stale-token":
        context.add_cookies(stale_token(pixel_server))  # type: ignore[arg-type]
    elif choice == "stale-revision":
        context.add_cookies(stale_revision(pixel_server))  # type: ignore[arg-type]
    elif isinstance(choice, dict):
        context.add_cookies(pixel_server.grant(**choice))  # type: ignore[arg-type]
    cookies_before = context.cookies()
    page.goto(pixel_server.origin_page_url(AD_PATH))
    page.wait_for_function("window.__jpcfg")
    interact(page)
    assert watch.collects() == []
    assert pixel_server.events() == []
    assert third_party.requests == []
    assert context.cookies() == cookies_before  # the pixel writes no cookie
    # Whatever the choice, the banner is imported once, from the pixel's origin: it alone decides
    # what to ask, apply, or delete (the stale visitor id, here).
    assert [r.url for r in watch.banner_loads()] == [pixel_server.url + "/b.js"]
    assert watch.errors == []


def test_pageview_is_sent_when_consent_arrives_later_and_stops_on_withdrawal(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    page.goto(pixel_server.origin_page_url(AD_PATH), referer="https://www.nav.no/")
    page.wait_for_function("window.__jpcfg && window.__bannerLoads === 1")
    page.mouse.wheel(0, 500)
    settle(page)
    assert watch.collects() == []

    # What the banner does on "accept": write the cookies, then dispatch the event.
    context.add_cookies(pixel_server.grant())  # type: ignore[arg-type]
    dispatch_consent(page, statistics=True, marketing=False)
    pv = one(wait_events(page, pixel_server, 1, name="pageview"))
    assert (pv["url"], pv["referrer"], pv["ad_id"]) == (
        pixel_server.origin_page_url(AD_PATH),
        "https://www.nav.no/",
        "4711",
    )
    assert page.evaluate("jobpixel('consent')") == {"statistics": True, "marketing": False}
    # A later choice that keeps statistics (marketing added) does not count the page again.
    dispatch_consent(page, statistics=True, marketing=True)
    page.click("#apply")
    one(wait_events(page, pixel_server, 1, name="apply_click"))
    assert len(pixel_server.events(name="pageview")) == 1
    sent = len(watch.collects())

    # Withdrawal: the banner rewrites the consent cookie, deletes the token, dispatches.
    page.evaluate(
        """() => {
          const c = JSON.parse(decodeURIComponent(document.cookie.match(/jobpixel_consent=([^;]*)/)[1]));
          c.s = 0;
          document.cookie = "jobpixel_consent=" + encodeURIComponent(JSON.stringify(c)) + "; path=/";
          document.cookie = "jobpixel_vid=; path=/; max-age=0";
        }"""
    )
    dispatch_consent(page, statistics=False, marketing=False)
    assert page.evaluate("jobpixel('consent')") == {"statistics": False, "marketing": False}
    interact(page)
    assert len(watch.collects()) == sent
    assert watch.errors == []


@pytest.mark.parametrize("gpc", [False, True], ids=["no-gpc", "gpc"])
def test_gpc_in_the_browser_turns_marketing_off_and_the_pixel_claims_nothing(
    gpc: bool, page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    """A stored marketing grant (m: 1) on a browser that now sends GPC: the events are stored with
    marketing off and no click id. The pixel's bodies carry no `marketing` claim at all: the server
    decides from the signed grant and ``Sec-GPC``. The banner is the stand-in, which does not
    rewrite the cookie, so nothing but the server's own check turns marketing off here."""
    if gpc:
        page.add_init_script(
            "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
        )
        # The server reads marketing from the grant and Sec-GPC only, never the body (issue #7):
        # a browser with GPC on sends the header with every request, as here.
        page.set_extra_http_headers({"Sec-GPC": "1"})
    context.add_cookies(pixel_server.grant(statistics=True, marketing=True))  # type: ignore[arg-type]
    page.goto(pixel_server.origin_page_url(AD_PATH + "?gclid=X"))
    pv = one(wait_events(page, pixel_server, 1, name="pageview"))
    if gpc:
        assert (pv["marketing"], pv["click_ids"]) == (0, {})
    else:
        assert (pv["marketing"], pv["click_ids"]) == (1, {"gclid": "X"})
    settle(page)
    sent = [r.post_data_json for r in watch.collects()]  # the pageview and the queued track call
    assert sent and not [e for e in sent if "marketing" in e]
    assert watch.errors == []


def test_settings_elements_and_api_open_the_banner(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    """A click on a settings element while b.js is still on its way opens it once it is in; later
    clicks and jobpixel('settings') open it directly. The link is never followed."""
    context.add_cookies(pixel_server.grant(statistics=False))  # type: ignore[arg-type]
    held: list[Route] = []
    page.unroute("**/b.js")
    page.route("**/b.js", lambda route: held.append(route))  # b.js waits until the click is done
    page.goto(pixel_server.origin_page_url(AD_PATH))
    page.wait_for_function("window.__jpcfg")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1 and page.evaluate("window.__bannerLoads") is None
    page.click("#settings")
    fulfill_fake_banner(held[0])
    page.wait_for_function("window.__bannerLoads === 1")
    assert page.evaluate("[window.__openedOnLoad, location.hash]") == [1, ""]  # opened, link not followed
    page.click("#settings")
    page.evaluate("jobpixel('settings')")
    assert page.evaluate("[window.__bannerLoads, window.__opens]") == [1, 2]
    assert watch.errors == []


# -- never break the host page ------------------------------------------------------------------------


def test_host_page_runs_when_the_pixel_server_is_down(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    pixel_server.stop()
    page.goto(pixel_server.origin_page_url(AD_PATH))
    page.wait_for_function("window.hostTicks > 3")
    assert page.text_content("#out") == "host ok"
    page.evaluate("jobpixel('track', 'x')")  # the page's own stub still queues
    assert watch.errors == []


def test_host_page_runs_when_the_pixel_server_goes_down_after_load(
    page: Page, context: BrowserContext, pixel_server: LiveServer, watch: Watch
) -> None:
    open_ad(page, pixel_server, context)
    pixel_server.stop()
    ticks = page.evaluate("hostTicks")
    interact(page)
    page.evaluate("jobpixel('settings')")
    page.wait_for_function("t => hostTicks > t + 3", arg=ticks)
    assert page.evaluate("location.pathname") == "/jobb/99/pixel_ad.html"  # the host's pushState worked
    assert watch.errors == []


def test_pixel_errors_never_reach_the_host_page(page: Page, pixel_server: LiveServer, watch: Watch) -> None:
    """A consent cookie that is not JSON and a site config that is not JSON: the pixel stays quiet."""
    page.route("**/s/test.json", lambda route: route.fulfill(content_type="application/json", body="{oops"))
    page.context.add_cookies(
        [{"name": "jobpixel_consent", "value": "%7Bnot-json", "url": pixel_server.partner.origin}]
    )
    page.goto(pixel_server.origin_page_url(AD_PATH))
    page.wait_for_function("window.jobpixel && jobpixel.jp")
    page.evaluate("jobpixel('conversion'); jobpixel('consent'); jobpixel()")
    interact(page)
    assert page.evaluate("jobpixel('consent')") is None
    assert watch.errors == []
