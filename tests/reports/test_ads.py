"""Job metadata on pageviews: validated at /collect, one ``ads`` row per (site, ad), latest wins."""

from __future__ import annotations

import time

import pytest

from tests.reports.conftest import ReportsServer


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ("Sykepleier", "job"),
        ({"title": "x" * 201}, "job.title"),
        ({"category": 5}, "job.category"),
        ({"date_posted": "1. desember"}, "job.date_posted"),
        ({"valid_through": "2026-02-30x"}, "job.valid_through"),
        ({"words": -1}, "job.words"),
        ({"words": True}, "job.words"),
    ],
)
def test_bad_job_is_400_naming_the_field(reports_server: ReportsServer, job: object, field: str) -> None:
    import httpx

    tok = reports_server.consent()["token"]
    ev = reports_server.event(tok, "pageview", "1", job=job)
    r = httpx.post(
        reports_server.url + "/collect", json=ev, headers={"Origin": reports_server.partner.origin}
    )
    assert r.status_code == 400 and r.json()["field"] == field, r.text


def test_ads_row_latest_metadata_wins_first_and_last_seen(reports_server: ReportsServer) -> None:
    tok = reports_server.consent()["token"]
    job = {
        "title": "Kokk",
        "category": "Restaurant",
        "location": "Bergen",
        "employer": "Hotell AS",
        "employment_type": "FULL_TIME",
        "date_posted": "2026-11-01",
        "valid_through": "2026-12-31",
        "words": 300,
        "unknown_key": "ignored",
    }
    reports_server.collect([reports_server.event(tok, "pageview", "77", job=job)])
    reports_server.flush()
    time.sleep(0.01)
    reports_server.collect([reports_server.event(tok, "pageview", "77", job={**job, "title": "Kokk  II\n"})])
    # job on a non-pageview is ignored; a pageview without job leaves the row as it is
    reports_server.collect([reports_server.event(tok, "engagement", "77", job={"title": "no"})])
    reports_server.collect([reports_server.event(tok, "pageview", "77")])
    reports_server.flush()
    rows = reports_server.query(
        "SELECT ad_id, count() AS n, min(first_seen) AS f, max(last_seen) AS l, max(latest) AS m "
        "FROM ${db}.ads GROUP BY site_id, ad_id"
    )
    [row] = rows
    assert row["n"] == 2 and row["f"] < row["l"]
    m = row["m"]
    assert (m["title"], m["category"], m["employer"], m["words"], m["valid_through"]) == (
        "Kokk II",
        "Restaurant",
        "Hotell AS",
        300,
        "2026-12-31",
    )


def test_ad_job_lookup(reports_server: ReportsServer) -> None:
    from pixel_server.reports.ads import ad_job

    tok = reports_server.consent()["token"]
    reports_server.collect([reports_server.event(tok, "pageview", "5", job={"title": "Lege", "words": 10})])
    reports_server.flush()
    store = reports_server.state.store
    assert store is not None
    assert ad_job(store, "test", "5") == {"title": "Lege", "words": 10}
    assert ad_job(store, "test", "6") == {} and ad_job(store, "shop", "5") == {}
