"""Enrichment: device class and bots from the User-Agent; referrer, UTM and click ids from URLs."""

from __future__ import annotations

import pytest

from pixel_server.ingest.enrich import (
    parse_url,
    parse_user_agent,
    referrer_domain,
    stored_props,
    stored_referrer,
    stored_url,
)

UA = {
    "win_chrome": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1",
    "ipad": "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1",
    "android_phone": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Mobile Safari/537.36",
    "android_tablet": "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36",
    "cubot_phone": "Mozilla/5.0 (Linux; Android 13; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Mobile Safari/537.36",
    "mac_firefox": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:132.0) Gecko/20100101 Firefox/132.0",
}


@pytest.mark.parametrize(
    ("ua", "browser", "os", "device"),
    [
        (UA["win_chrome"], "Chrome", "Windows", "desktop"),
        (UA["iphone"], "Mobile Safari", "iOS", "mobile"),
        (UA["ipad"], "Mobile Safari", "iOS", "tablet"),
        (UA["android_phone"], "Chrome", "Android", "mobile"),
        (UA["android_tablet"], "Chrome", "Android", "tablet"),
        (UA["cubot_phone"], "Chrome", "Android", "mobile"),
        (UA["mac_firefox"], "Firefox", "Mac OS X", "desktop"),
    ],
)
def test_people(ua: str, browser: str, os: str, device: str) -> None:
    info = parse_user_agent(ua)
    assert (info.browser, info.os, info.device, info.is_bot) == (browser, os, device, False)


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/130.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        "python-requests/2.32.3",
        "curl/8.5.0",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "",
    ],
)
def test_bots(ua: str) -> None:
    assert parse_user_agent(ua).is_bot


def test_url_utm_and_click_ids() -> None:
    info = parse_url(
        "https://jobs.example.no/jobb/1?utm_source=finn&UTM_MEDIUM=cpc&sccid=S1&fbclid=F1&gclid=G1"
    )
    assert info.hostname == "jobs.example.no" and info.path == "/jobb/1"
    assert info.utm == {"utm_source": "finn", "utm_medium": "cpc"}
    assert list(info.click_ids) == ["ScCid", "fbclid", "gclid"]
    assert parse_url("https://x.no").click_ids == {} and parse_url("https://x.no").path == "/"


UTM = frozenset({"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"})


@pytest.mark.parametrize(
    ("url", "marketing", "expected"),
    [
        ("https://x.no/jobb/1?utm_source=finn&gclid=G1&a=1", False, "https://x.no/jobb/1?utm_source=finn"),
        (
            "https://x.no/jobb/1?utm_source=finn&gclid=G1&a=1",
            True,
            "https://x.no/jobb/1?utm_source=finn&gclid=G1",
        ),
        ("https://x.no/jobb/1?FBCLID=F&ScCid=S&li_fat_id=L&wbraid=W&gbraid=B", False, "https://x.no/jobb/1"),
        ("https://x.no/jobb/1?msclkid=M&_gl=1*abc&ttclid=T&twclid=W&dclid=D", False, "https://x.no/jobb/1"),
        ("https://x.no/jobb/1?a=1#frag", False, "https://x.no/jobb/1"),
        ("https://x.no/jobb/1?gclid=G#gclid=G2", True, "https://x.no/jobb/1?gclid=G"),  # no fragment, ever
        ("https://x.no/jobb/1;gclid=G1", False, "https://x.no/jobb/1"),
        ("https://x.no/jobb/1?email=a%40b.no&utm_medium=cpc", False, "https://x.no/jobb/1?utm_medium=cpc"),
        ("https://x.no/jobb/1", False, "https://x.no/jobb/1"),
    ],
)
def test_stored_url_keeps_the_allow_list_and_click_ids_only_with_marketing(
    url: str, marketing: bool, expected: str
) -> None:
    assert stored_url(url, UTM, marketing) == expected


def test_stored_url_per_site_allow_list() -> None:
    keep = frozenset({"lang", "utm_source"})
    assert stored_url("https://x.no/a?lang=nn&utm_source=s&utm_medium=m&q=x", keep, False) == (
        "https://x.no/a?lang=nn&utm_source=s"
    )


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("https://www.google.com/search?q=sykepleier+oslo", "https://www.google.com/search"),
        ("https://jobs.example.no/jobb/1?gclid=G1&utm_source=x#top", "https://jobs.example.no/jobb/1"),
        ("https://user:pw@Finn.NO:8443/job/1?x=1", "https://finn.no:8443/job/1"),
        ("https://x.no/l;msclkid=M", "https://x.no/l"),
        ("", ""),
        ("not a url", ""),
    ],
)
def test_stored_referrer_is_scheme_host_path(ref: str, expected: str) -> None:
    assert stored_referrer(ref) == expected


def test_stored_props_drop_click_ids_without_marketing() -> None:
    props = {
        "gclid": "G1",
        "FBCLID": "F1",
        "landing": "https://x.no/a?gclid=G2&utm_source=s#frag",
        "note": "came via ?ttclid=T3",
        "dept": "kirurgi",
    }
    assert stored_props(props, UTM, False) == {"landing": "https://x.no/a?utm_source=s", "dept": "kirurgi"}
    kept = stored_props(props, UTM, True)
    assert kept["gclid"] == "G1" and kept["landing"] == "https://x.no/a?gclid=G2&utm_source=s"


@pytest.mark.parametrize(
    ("ref", "own", "expected"),
    [
        ("https://www.finn.no/job/1", "jobs.example.no", "finn.no"),
        ("https://jobs.example.no/other", "jobs.example.no", ""),
        ("", "jobs.example.no", ""),
        ("android-app://com.linkedin.android/", "x.no", "com.linkedin.android"),
    ],
)
def test_referrer_domain(ref: str, own: str, expected: str) -> None:
    assert referrer_domain(ref, own) == expected
