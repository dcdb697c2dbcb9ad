"""The forwarding block's parts that need a real store: the ads lookup for apply events' job metadata."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pixel_server.forwarding.ads import StoreAds
from pixel_server.forwarding.wiring import journal_consumers
from pixel_server.storage.chdb_store import ChdbStore
from tests.forwarding.support import forwarding_settings
from tests.harness import make_settings


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    st = ChdbStore(tmp_path_factory.mktemp("chdb") / "chdb", "jp_wiring")
    st.migrate()
    yield st
    st.close()


def sighting(site: str, ad: str, ts: float, title: str) -> dict[str, Any]:
    job = {"title": title, "category": "Salg", "location": "Oslo", "employer": "Acme AS"}
    latest = {"ts": ts, **job, "employment_type": "", "date_posted": "", "valid_through": "", "words": 0}
    return {"site_id": site, "ad_id": ad, "first_seen": ts, "last_seen": ts, "latest": latest}


def test_store_ads_answers_many_ads_in_one_query_newest_metadata_wins(store: ChdbStore) -> None:
    now = time.time()
    store.insert(
        "ads",
        [
            sighting("shop", "4711", now - 60, "Selger"),
            sighting("shop", "4711", now, "Senior selger"),
            sighting("shop", "it's-42", now, "Kokk"),  # a quote in an ad id is data, not SQL
            sighting("test", "4711", now, "Annen"),
        ],
    )
    ads = StoreAds(SimpleNamespace(store=store))  # type: ignore[arg-type]
    found = ads.many([("shop", "4711"), ("shop", "it's-42"), ("shop", "nope")])
    assert {k: v["title"] for k, v in found.items()} == {
        ("shop", "4711"): "Senior selger",
        ("shop", "it's-42"): "Kokk",
    }
    assert ads("test", "4711")["category"] == "Salg"
    # a miss is not asked again for a while: an unknown ad costs one query a minute, not one per event
    calls = []
    real = store.query
    store.query = lambda *a, **k: calls.append(a) or real(*a, **k)  # type: ignore[method-assign]
    try:
        assert ads("shop", "nope") == {}
    finally:
        store.query = real  # type: ignore[method-assign]
    assert calls == []


def test_the_outbox_is_a_journal_consumer_only_while_a_site_forwards(tmp_path: Path) -> None:
    assert journal_consumers(make_settings(tmp_path), ("loader",)) == ("loader",)
    on = forwarding_settings(tmp_path, "http://127.0.0.1:9")
    assert journal_consumers(on, ("loader",)) == ("loader", "outbox")
