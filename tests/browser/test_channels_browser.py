"""The ad channels in Chromium, browser side and server side together.

The server forwards (``ForwardingServer``: ``secret_env`` set for GA4, Meta, LinkedIn and Snapchat on
site ``shop``, each channel's API a local recording server); the channels' browser tags are answered by
the ``third_party`` fixture with an empty script, so their loads are seen without the internet and the
vendors' queue stubs keep every call the page made to them.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Request, expect

from tests.browser.conftest import ThirdParty
from tests.forwarding.support import ForwardingServer
from tests.harness import PartnerSite, RecordingServer

FORWARDED = ("ga4", "meta", "linkedin", "snapchat")
TAG_HOSTS = {  # pixel_server.core.channels: the five channels' script hosts
    "www.googletagmanager.com",
    "connect.facebook.net",
    "snap.licdn.com",
    "sc-static.net",
    "adsby.bidtheatre.com",
}
CLICKS = "?fbclid=IwAR-browser&li_fat_id=li-browser-1&ScCid=sc-browser-1"
AD = "jobb/4711/banner_shop.html" + CLICKS
THANKS = "takk/banner_shop.html" + CLICKS  # thanks_pattern "/takk*": the pixel sends apply_complete
LAYER2 = "dialog.jpb-2"


@pytest.fixture(scope="module")
def recorders() -> Iterator[dict[str, RecordingServer]]:
    recs = {name: RecordingServer() for name in FORWARDED}
    yield recs
    for rec in recs.values():
        rec.close()


@pytest.fixture(scope="module")
def pixel_server(
    tmp_path_factory: pytest.TempPathFactory, recorders: dict[str, RecordingServer]
) -> Iterator[ForwardingServer]:
    partner = PartnerSite()
    server = ForwardingServer(tmp_path_factory.mktemp("channels"), partner, recorders)
    server.start()
    yield server
    server.stop()
    partner.close()


class Collected:
    """The events the page sent to /collect: name → event ids."""

    def __init__(self, page: Page, server: ForwardingServer) -> None:
        self.server = server
        self.events: list[dict[str, Any]] = []
        page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.url == self.server.url + "/collect" and request.method == "POST":
            body = json.loads(request.post_data or "{}")
            self.events += body if isinstance(body, list) else [body]

    def ids(self, name: str) -> list[str]:
        return [e["event_id"] for e in self.events if e.get("name") == name]


def choose(page: Page, label: str) -> None:
    """Click a banner button; return once the pixel was told (after POST /consent answered)."""
    page.evaluate(
        "() => { window.__told = false; addEventListener('jobpixel:consent', () => (window.__told = true)) }"
    )
    page.get_by_role("button", name=label, exact=True).click()
    page.wait_for_function("window.__told")


def settings(page: Page, statistics: bool, marketing: bool) -> None:
    """Open the settings layer, set the two switches, save."""
    page.evaluate("jobpixel('settings')")
    expect(page.locator(LAYER2)).to_be_visible()
    for name, on in (("Statistikk", statistics), ("Markedsføring", marketing)):
        switch = page.get_by_role("switch", name=name)
        switch.check() if on else switch.uncheck()
    choose(page, "Lagre valg")


def wait_until(page: Page, server: ForwardingServer, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` while Playwright runs the page's routes; seal the journal for the outbox meanwhile."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, "timed out"
        server.flush()
        page.wait_for_timeout(150)
    return got


def carried(rec: RecordingServer, event_id: str) -> bool:
    return any(event_id in r.body.decode(errors="replace") for r in list(rec.requests))


def hosts(urls: list[str]) -> set[str]:
    return {urllib.parse.urlsplit(u).hostname or "" for u in urls}


def test_channels_only_with_marketing_consent_browser_and_server(
    page: Page,
    context: BrowserContext,
    pixel_server: ForwardingServer,
    third_party: ThirdParty,
    recorders: dict[str, RecordingServer],
) -> None:
    sent = Collected(page, pixel_server)
    page.goto(pixel_server.origin_page_url(AD))
    expect(page.locator("dialog.jpb-1")).to_be_visible()

    # statistics only: measured, but no channel host, no tag, nothing forwarded
    settings(page, statistics=True, marketing=False)
    page.locator("#apply").click()
    page.goto(pixel_server.origin_page_url(THANKS))
    wait_until(page, pixel_server, lambda: sent.ids("apply_complete") and sent.ids("apply_click"))
    quiet = sent.ids("pageview") + sent.ids("apply_click") + sent.ids("apply_complete")
    pixel_server.wait_for_events(len(quiet), page=page, site_id="shop")
    assert third_party.requests == []

    # marketing granted: every channel's tag is requested, and the server forwards what the page sends
    settings(page, statistics=True, marketing=True)
    wait_until(page, pixel_server, lambda: hosts(third_party.requests) >= TAG_HOSTS)
    page.goto(pixel_server.origin_page_url(THANKS))
    wait_until(page, pixel_server, lambda: len(sent.ids("apply_complete")) == 2)
    apply = sent.ids("apply_complete")[-1]
    # Meta (user agent + fbclid), LinkedIn (li_fat_id click id), Snap (ScCid) can match this visitor from
    # what the browser sent; GA4 needs the _ga client id the pixel would have to send (channel_ids).
    wait_until(
        page,
        pixel_server,
        lambda: all(carried(recorders[c], apply) for c in ("meta", "linkedin", "snapchat")),
    )
    for name in FORWARDED:
        for event_id in quiet:
            assert not carried(recorders[name], event_id), (name, event_id)

    # withdrawn: the channel cookies go, and no tag loads or channel request again
    context.add_cookies([{"name": "_fbp", "value": "fb.1.1.1", "url": pixel_server.partner.origin}])
    settings(page, statistics=True, marketing=False)
    assert "_fbp" not in {c["name"] for c in context.cookies()}
    before = len(third_party.requests)
    page.goto(pixel_server.origin_page_url(THANKS))
    wait_until(page, pixel_server, lambda: len(sent.ids("apply_complete")) == 3)
    after_withdrawal = sent.ids("apply_complete")[-1]
    page.locator("#apply").click()
    pixel_server.wait_for_events(1, page=page, event_id=after_withdrawal)
    page.wait_for_timeout(1500)  # an outbox pass (1 s) has read it
    pixel_server.flush()
    assert third_party.requests[before:] == []
    for name in FORWARDED:
        assert not carried(recorders[name], after_withdrawal), name


def test_each_tag_receives_the_apply_event_with_the_shared_event_id(
    page: Page, pixel_server: ForwardingServer, third_party: ThirdParty
) -> None:
    sent = Collected(page, pixel_server)
    page.goto(pixel_server.origin_page_url(AD))
    choose(page, "Godta alle")
    wait_until(page, pixel_server, lambda: hosts(third_party.requests) >= TAG_HOSTS)
    page.goto(pixel_server.origin_page_url(THANKS))
    wait_until(page, pixel_server, lambda: sent.ids("apply_complete"))
    page.wait_for_function("window.fbq && window.snaptr && window.lintrk && window.dataLayer")
    [apply] = sent.ids("apply_complete")
    # the vendors' queue stubs hold every call (their scripts were answered empty): the event id must be in
    # a call to each — Meta eventID, Snap client_dedup_id, LinkedIn event_id, GA4 event parameter
    calls = page.evaluate(
        """() => ({
            meta: JSON.stringify(Array.from(window.fbq.queue || [], (a) => Array.from(a))),
            snapchat: JSON.stringify(Array.from(window.snaptr.queue || [], (a) => Array.from(a))),
            linkedin: JSON.stringify(window.lintrk.q || []),
            ga4: JSON.stringify(Array.from(window.dataLayer, (a) => Array.from(a))),
        })"""
    )
    missing = [name for name, text in calls.items() if apply not in text]
    assert missing == [], calls


# the vendors' queue stubs (their scripts answer empty here); Meta's as kept before a withdrawal
TAG_CALLS = """() => {
    const list = (calls) => JSON.stringify(Array.from(calls || [], (a) => Array.from(a)));
    return {
        meta: list((window.__metaStub || window.fbq || {}).queue),
        snapchat: list((window.snaptr || {}).queue),
        linkedin: JSON.stringify((window.lintrk || {}).q || []),
        ga4: list(window.dataLayer),
    };
}"""


def tag_calls_with(page: Page, event_id: str) -> list[str]:
    """The tags whose queued calls (or the dataLayer) name ``event_id``."""
    calls: dict[str, str] = page.evaluate(TAG_CALLS)
    return sorted(name for name, text in calls.items() if event_id in text)


def test_tags_get_no_event_before_marketing_consent_nor_after_withdrawal(
    page: Page, pixel_server: ForwardingServer, third_party: ThirdParty
) -> None:
    sent = Collected(page, pixel_server)
    page.goto(pixel_server.origin_page_url(AD))

    # statistics only: the pixel sends, no tag exists, the dataLayer holds consent commands only
    settings(page, statistics=True, marketing=False)
    wait_until(page, pixel_server, lambda: sent.ids("pageview"))
    page.locator("#apply").click()
    wait_until(page, pixel_server, lambda: sent.ids("apply_click"))
    [statistics_view], [statistics_click] = sent.ids("pageview"), sent.ids("apply_click")
    assert page.evaluate("[typeof fbq, typeof snaptr, typeof lintrk]") == ["undefined"] * 3
    assert page.evaluate("dataLayer.filter((a) => a[0] != 'consent').length") == 0

    # marketing granted on this page: the tags start; what was sent without it is not passed on,
    # the next apply click is — Meta (custom ApplyClick) and GA4; Snap and LinkedIn forward no clicks
    settings(page, statistics=True, marketing=True)
    wait_until(page, pixel_server, lambda: hosts(third_party.requests) >= TAG_HOSTS)
    page.locator("#apply").click()
    wait_until(page, pixel_server, lambda: len(sent.ids("apply_click")) == 2)
    click = sent.ids("apply_click")[-1]
    assert tag_calls_with(page, click) == ["ga4", "meta"]
    assert '"trackCustom","ApplyClick"' in page.evaluate(TAG_CALLS)["meta"]
    for earlier in (statistics_view, statistics_click):
        assert tag_calls_with(page, earlier) == []

    # withdrawn: the vendors' functions are gone and nothing new reaches a tag or the dataLayer
    page.evaluate("window.__metaStub = window.fbq")
    settings(page, statistics=True, marketing=False)
    page.locator("#apply").click()
    wait_until(page, pixel_server, lambda: len(sent.ids("apply_click")) == 3)
    after = sent.ids("apply_click")[-1]
    assert tag_calls_with(page, after) == []


# -- what the banner adds to the pixel's events (__jpkit.more): the page's JobPosting, the tags' ids -----

JOB_PAGE = "jobb/4812/job_posting.html"
OVERRIDE_PAGE = "jobb/4813/job_override.html"
GA_CLIENT_ID = "1234567890.1700000000"
# gtag.js as far as the banner uses it: gtag('get', id, 'client_id', callback) answers the client id
FAKE_GTAG = """(() => {
  const answer = (a) => { if (a && a[0] === 'get' && a[2] === 'client_id') a[3](CLIENT_ID); };
  Array.prototype.forEach.call(window.dataLayer, answer);
  const push = window.dataLayer.push;
  window.dataLayer.push = function () {
    Array.prototype.forEach.call(arguments, answer);
    return push.apply(this, arguments);
  };
})();""".replace("CLIENT_ID", repr(GA_CLIENT_ID))


def bodies(sent: Collected, name: str) -> list[dict[str, Any]]:
    return [e for e in sent.events if e.get("name") == name]


def test_the_pageview_carries_the_pages_job_posting_and_only_the_pageview(
    page: Page, context: BrowserContext, pixel_server: ForwardingServer, third_party: ThirdParty
) -> None:
    """JSON-LD in an @graph, after a broken block; the words of [data-jobpixel-text]; stored in `ads`."""
    from pixel_server.reports.ads import ad_job

    sent = Collected(page, pixel_server)
    page.goto(pixel_server.origin_page_url(JOB_PAGE))
    settings(page, statistics=True, marketing=False)
    wait_until(page, pixel_server, lambda: bodies(sent, "pageview"))
    page.locator("#apply").click()
    wait_until(page, pixel_server, lambda: bodies(sent, "apply_click"))
    expected = {
        "title": "Sykepleier natt",
        "category": "Helse og omsorg",
        "location": "Bergen",
        "employer": "Acme Helse AS",
        "employment_type": "FULL_TIME, TEMPORARY",
        "date_posted": "2026-11-20",
        "valid_through": "2026-12-31",
        "words": 9,
    }
    [view] = bodies(sent, "pageview")
    assert view["job"] == expected
    assert "job" not in bodies(sent, "apply_click")[0]
    assert "channel_ids" not in view  # statistics only
    # an SPA route to another ad: the pageview leaves as history changes, before the new view renders,
    # so the document still shows this ad's JobPosting: no metadata rather than the wrong ad's
    page.evaluate("history.pushState({}, '', '/jobb/4899/annen-stilling')")
    wait_until(page, pixel_server, lambda: len(bodies(sent, "pageview")) == 2)
    routed = bodies(sent, "pageview")[1]
    assert routed["ad"] == "4899" and "job" not in routed
    pixel_server.wait_for_events(1, page=page, event_id=view["event_id"])
    assert pixel_server.state.store is not None
    assert ad_job(pixel_server.state.store, "shop", "4812") == expected
    assert third_party.requests == []


def test_tag_overrides_win_and_values_the_server_would_refuse_never_cost_the_pageview(
    page: Page, pixel_server: ForwardingServer
) -> None:
    """data-title / data-location on the pixel tag win; a text past the server's limit is cut to it, a
    date that is no date is left out, so the pageview is accepted (a 400 would lose it)."""
    sent = Collected(page, pixel_server)
    answers: list[int] = []
    page.on(
        "response",
        lambda r: answers.append(r.status) if r.url == pixel_server.url + "/collect" else None,
    )
    page.goto(pixel_server.origin_page_url(OVERRIDE_PAGE))
    settings(page, statistics=True, marketing=False)
    wait_until(page, pixel_server, lambda: bodies(sent, "pageview") and answers)
    [view] = bodies(sent, "pageview")
    industry = page.evaluate(
        "JSON.parse(document.querySelector('script[type=\"application/ld+json\"]').textContent).industry"
    )
    assert len(industry) > 100
    # the employer is 99 characters and an emoji at the limit: cut by code points, never half an emoji
    # (JSON.stringify would write a lone surrogate, which the server's JSON parser refuses: a 400)
    employer = "x" * 99 + "\U0001f600"
    assert view["job"] == {
        "title": "Kokk",
        "category": industry[:100],
        "location": "Oslo",
        "employer": employer,
    }
    pixel_server.wait_for_events(1, page=page, event_id=view["event_id"])
    assert answers == [204]


def test_channel_ids_only_under_marketing_and_ga4_from_one_side_only(
    page: Page,
    context: BrowserContext,
    pixel_server: ForwardingServer,
    third_party: ThirdParty,
    recorders: dict[str, RecordingServer],
) -> None:
    """The tags' own first-party ids ride with the events only while marketing is in force; GA4, which
    has no dedup key, gets an event carrying the Google tag's client id from the server alone."""
    context.route(
        "https://www.googletagmanager.com/**",
        lambda route: route.fulfill(content_type="text/javascript", body=FAKE_GTAG),
    )
    origin = pixel_server.partner.origin
    sent = Collected(page, pixel_server)
    page.goto(pixel_server.origin_page_url(JOB_PAGE))
    settings(page, statistics=True, marketing=False)
    page.locator("#apply").click()
    wait_until(page, pixel_server, lambda: bodies(sent, "pageview") and bodies(sent, "apply_click"))

    settings(page, statistics=True, marketing=True)
    # what the channels' tags would set now (they are answered empty here); and one cookie not theirs
    context.add_cookies(
        [
            {"name": "_fbp", "value": "fb.1.1700000000000.111", "url": origin},
            {"name": "_scid", "value": "scid-browser-1", "url": origin},
            {"name": "li_fat_id", "value": "li-cookie-1", "url": origin},
            {"name": "_unrelated", "value": "x", "url": origin},
        ]
    )
    # on the thanks page the apply_complete leaves before gtag.js could answer gtag('get', …): no client
    # id with it, so GA4 gets it from the tag, and the server sends GA4 nothing for it
    page.goto(pixel_server.origin_page_url(THANKS))
    wait_until(page, pixel_server, lambda: sent.ids("apply_complete"))
    [complete] = bodies(sent, "apply_complete")
    assert complete["channel_ids"] == {
        "fbp": "fb.1.1700000000000.111",
        "scid": "scid-browser-1",
        "li_fat_id": "li-cookie-1",
    }
    page.wait_for_function("window.fbq && window.snaptr && window.dataLayer && window.__jpbanner.state.gaid")
    assert tag_calls_with(page, complete["event_id"]) == ["ga4", "linkedin", "meta", "snapchat"]
    wait_until(page, pixel_server, lambda: carried(recorders["meta"], complete["event_id"]))
    assert any("fb.1.1700000000000.111" in r.body.decode() for r in recorders["meta"].requests)
    wait_until(page, pixel_server, lambda: carried(recorders["snapchat"], complete["event_id"]))
    assert any("scid-browser-1" in r.body.decode() for r in recorders["snapchat"].requests)

    # once gtag.js answered, an apply click carries the client id: GA4 gets it from the server alone
    page.goto(pixel_server.origin_page_url(JOB_PAGE))
    page.wait_for_function("window.__jpbanner && window.__jpbanner.state.gaid")
    page.locator("#apply").click()
    wait_until(page, pixel_server, lambda: len(bodies(sent, "apply_click")) == 2)
    click = bodies(sent, "apply_click")[-1]
    assert click["channel_ids"]["ga_client_id"] == GA_CLIENT_ID
    wait_until(page, pixel_server, lambda: carried(recorders["ga4"], click["event_id"]))
    [ga4] = [r for r in recorders["ga4"].requests if click["event_id"] in r.body.decode()]
    assert json.loads(ga4.body)["client_id"] == GA_CLIENT_ID
    assert tag_calls_with(page, click["event_id"]) == ["meta"]  # not GA4 too; Snap, LinkedIn take no clicks
    assert not carried(recorders["ga4"], complete["event_id"])
    # no marketing, no ids: not on the statistics-only events before, and not after a withdrawal
    settings(page, statistics=True, marketing=False)
    page.locator("#apply").click()
    wait_until(page, pixel_server, lambda: len(bodies(sent, "apply_click")) == 3)
    without = [bodies(sent, "pageview")[0], bodies(sent, "apply_click")[0], bodies(sent, "apply_click")[2]]
    assert all("channel_ids" not in e for e in without), without
