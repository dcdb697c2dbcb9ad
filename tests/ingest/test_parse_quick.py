"""The fast paths of ``/collect`` (issue #7's speed) decide nothing on their own.

``request._quick`` takes the common, valid event without the per-field helpers of ``request._checked``;
``enrich.page_columns`` and ``referrer_columns`` put the stored URL's columns behind one cache lookup.
Each is held to the careful code it stands in for: the same answer, or (``_quick``) no answer at all.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pixel_server.core.errors import Rejected
from pixel_server.ingest.enrich import (
    UTM_KEYS,
    page_columns,
    parse_url,
    referrer_columns,
    referrer_domain,
    stored_referrer,
    stored_url,
)
from pixel_server.ingest.request import _checked, _quick, parse_body, parse_event

UUID = "7F1C2B8E-1111-4A4A-9B9B-123456789ABC"
GOOD: dict[str, Any] = {
    "site": "test",
    "ad": "4711",
    "name": "engagement",
    "url": "https://jobs.example/jobb/4711?utm_source=nav&gclid=abc#top",
    "referrer": "https://www.google.com/search?q=x",
    "event_id": UUID,
    "pageview_id": str(uuid.uuid4()),
    "engaged_ms": 12_000,
    "scroll": 55,
    "activity": 3,
    "client_ts": 1_780_000_000_000,
    "token": "t" * 60,
}

# Values near every line the careful code draws: types, empties, lengths, ranges, bools and floats.
EDGE_VALUES: list[Any] = [
    None,
    "",
    " ",
    "test",
    "pageview",
    "page view",
    "pageview\n",
    "x" * 64,
    "x" * 65,
    "https://jobs.example/jobb/1",
    "http://jobs.example",
    "https://",
    "http://[x/",
    "ftp://jobs.example/",
    "jobs.example/jobb/1",
    "https://jobs.example/" + "a" * 1990,
    "https://jobs.example/" + "a" * 1980,
    UUID,
    UUID.lower(),
    UUID + "\n",
    UUID[:-1],
    0,
    -1,
    1,
    100,
    101,
    True,
    False,
    3.0,
    3.5,
    86_400_000,
    86_400_001,
    17_280,
    17_281,
    946_684_800_000,
    946_684_799_999,
    4_102_444_800_000,
    4_102_444_800_001,
    1_780_000_000_000.0,
    [],
    {},
    {"k": "v"},
    {"k": 1},
    {"": "v"},
    {"title": "Sykepleier", "words": 300},
    {"fbp": "fb.1.2.3"},
    {"fbp": 7},
]
edge_values = st.sampled_from(EDGE_VALUES)
_GONE = object()
FIELDS = list(GOOD) + ["props", "job", "channel_ids"]
events = st.builds(
    lambda over, drop: {k: v for k, v in {**GOOD, **over}.items() if k not in drop},
    st.dictionaries(st.sampled_from(FIELDS), edge_values | st.text(max_size=20), max_size=6),
    st.sets(st.sampled_from(FIELDS), max_size=3),
)


def outcome(parse: Any, ev: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return ("ok", parse(ev, "events[2]."))
    except Rejected as exc:
        return ("refused", exc.status, exc.field, exc.detail)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
@example(GOOD)
@example({**GOOD, "name": "pageview", "job": {"title": "  Sykepleier  natt ", "words": 12.0}})
@example({**GOOD, "scroll": True})
@example({**GOOD, "scroll": 50.0})
@example({**GOOD, "props": {"source": "ats", "n": 2, "ok": True}})
@example({**GOOD, "props": {"": "x"}})
def test_quick_accepts_only_what_checked_accepts_and_gives_the_same_hit(ev: dict[str, Any]) -> None:
    quick = outcome(_quick, ev)
    checked = outcome(_checked, ev)
    assert quick == ("ok", None) or quick == checked, (ev, quick, checked)
    assert outcome(parse_event, ev) == checked


def test_every_edge_value_in_every_field_alone() -> None:
    """Each field of a good event set to each edge value (and removed), one at a time: every line the
    careful code draws, not left to the odds of a random draw."""
    for field in FIELDS:
        for value in [*EDGE_VALUES, _GONE]:
            ev = {k: v for k, v in GOOD.items() if k != field}
            if value is not _GONE:
                ev[field] = value
            quick = outcome(_quick, ev)
            assert quick == ("ok", None) or quick == outcome(_checked, ev), (field, value)


def test_quick_takes_the_common_shapes() -> None:
    """Else it would be a slower path with extra steps: the beacons the pixel sends go through it."""
    pageview = {k: v for k, v in GOOD.items() if k not in ("pageview_id", "engaged_ms", "scroll", "activity")}
    for ev in (GOOD, {**pageview, "name": "pageview", "job": {"title": "Lege"}}, {**GOOD, "referrer": ""}):
        assert _quick(ev, "") is not None


@pytest.mark.parametrize("name", ["pageview\n", "apply_click\n"])
def test_a_name_with_a_trailing_newline_is_refused(name: str) -> None:
    """``$`` matched before a final newline: such a name used to be stored, newline and all."""
    body = b'{"site":"test","name":"%s","url":"https://jobs.example/","event_id":"%s"}' % (
        name.replace("\n", "\\n").encode(),
        UUID.encode(),
    )
    with pytest.raises(Rejected) as exc:
        parse_body(body)
    assert (exc.value.status, exc.value.field) == (400, "name")


urls = st.sampled_from(
    [
        "https://jobs.example/jobb/1",
        "https://Jobs.Example/jobb/1?utm_source=nav&utm_medium=cpc&utm_campaign=s&utm_term=t&utm_content=c",
        "https://jobs.example/jobb/1?gclid=abc&fbclid=def&keep=1&drop=2#frag",
        "https://jobs.example/jobb/1;gclid=abc?x=1",
        "http://jobs.example",
        "https://jobs.example/?UTM_SOURCE=a&utm_source=b&msclkid=z",
    ]
) | st.builds(
    lambda path, query: f"https://jobs.example/{path}?{query}",
    st.text(alphabet="abc/;=%", max_size=12),
    st.text(alphabet="abcgl=&utm_sourcefbid%#", max_size=30),
)
referrers = st.sampled_from(
    ["", "https://www.google.com/search?q=x", "https://jobs.example/list", "http://[::1]:8080/a", "nonsense"]
)


@settings(max_examples=500, deadline=None)
@given(urls, referrers, st.frozensets(st.sampled_from(["keep", "x", "utm_source"])), st.booleans())
def test_page_and_referrer_columns_are_the_careful_functions_combined(
    url: str, referrer: str, keep: frozenset[str], marketing: bool
) -> None:
    info = parse_url(url)
    assert page_columns(url, keep, marketing) == (
        stored_url(url, keep, marketing),
        info.hostname,
        info.path,
        *(info.utm.get(k, "") for k in UTM_KEYS),
        next(iter(info.click_ids), ""),
        info.click_ids if marketing else {},
    )
    stored = stored_referrer(referrer)
    assert referrer_columns(referrer, info.hostname) == (stored, referrer_domain(stored, info.hostname))


def test_put_rows_puts_each_url_column_where_it_belongs(tmp_path: Any) -> None:
    """Every column from the page URL and the referrer, with values that differ, in a stored row."""
    from pixel_server.ingest.enrich import parse_user_agent
    from pixel_server.ingest.pipeline import Batch, put_rows
    from tests.harness import DESKTOP_UA, make_grant, make_settings

    site = make_settings(tmp_path).sites["test"]
    url = (
        "https://Jobs.Example/jobb/7?utm_source=S&utm_medium=M&utm_campaign=C&utm_term=T&utm_content=X"
        "&gclid=G1#frag"
    )
    rows = {}
    for marketing in (False, True):
        cats = {"statistics", "marketing"} if marketing else {"statistics"}
        hit = _quick({**GOOD, "url": url, "referrer": "https://www.other.example/a?q=1"}, "")
        assert hit is not None
        batch = Batch({"user-agent": DESKTOP_UA}, [hit], is_array=False)
        batch.sites["test"] = site
        grant = make_grant(categories=cats)
        batch.grants.append(grant)
        batch.ua = parse_user_agent(DESKTOP_UA)
        put_rows(None, batch)  # type: ignore[arg-type]
        rows[marketing] = batch.rows[0]
        assert rows[marketing]["visitor_id"] == str(grant.visitor_id)
    expected = {
        "hostname": "jobs.example",
        "path": "/jobb/7",
        "utm_source": "S",
        "utm_medium": "M",
        "utm_campaign": "C",
        "utm_term": "T",
        "utm_content": "X",
        "click_id_type": "gclid",
        "referrer": "https://www.other.example/a",
        "referrer_domain": "other.example",
        "engaged_ms": 12_000,
        "scroll_pct": 55,
        "activity": 3,
        "client_ts": 1_780_000_000.0,
    }
    for marketing, row in rows.items():
        assert {k: row[k] for k in expected} == expected
        assert row["marketing"] == int(marketing)
        assert ("gclid=G1" in row["url"]) is marketing and "#" not in row["url"]
        assert row["click_ids"] == ({"gclid": "G1"} if marketing else {})
