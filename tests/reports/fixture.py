"""The hand-computed fixture (site ``test``, k = 3), posted through the real ``/collect``.

Ad 4711 has 600 words (read at ≥ 60 s engaged), 4712 300 words (≥ 30 s), 4713 no JobPosting.
Applications arrive from the ATS's thanks page (referrer ats.example.test).

| visitor | ad | arrives from | engaged s | scroll % | activity | read? | apply click | application |
|---|---|---|---|---|---|---|---|---|
| V1 | 4711 | google.com referrer | 70 | 40 | 10 | yes (time) | yes | yes |
| V2 | 4711 | google.com referrer | 10 | 80 | 0 | yes (scroll) | yes | |
| V3 | 4711 | google.com referrer | 20 | 30 | 0 | | | |
| V4 | 4711 | finn.no referrer | 30 + 31 | 50 | 4 + 3 | yes (61 s) | yes | yes |
| V5 | 4711 (2 pageviews) | finn.no referrer | 5, 0 | 10, 0 | 0 | | | |
| V6 | 4711 | utm_source=finn&utm_campaign=vinter | 0 | 0 | 0 | | | |
| V7 | 4711 | utm_source=linkedin | 3 | 0 | 0 | | | |
| V8 | 4712 | direct | 40 | 0 | 0 | yes (time) | | |
| V9, V10 | 4712 | direct | 0 | 0 | 0 | | | |
| V11 | 4713 | direct | 100 | 0 | 2 | no (no words, scroll < 75) | | |

Consent: V1–V3 accept all (marketing too), V4–V11 statistics only, two more visitors reject all → 13 choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.reports.conftest import ReportsServer

JOBS = {
    "4711": {"title": "Sykepleier", "category": "Helse", "location": "Oslo", "words": 600},
    "4712": {"title": "Kokk", "category": "Restaurant", "location": "Bergen", "words": 300},
}


@dataclass
class Visit:
    ad: str
    referrer: str = ""
    query: str = ""
    engagements: tuple[tuple[int, int, int], ...] = ()  # (engaged_ms, scroll, activity)
    extra_pageviews: int = 0
    click: bool = False
    complete: bool = False
    marketing: bool = False


VISITS = [
    Visit(
        "4711",
        "https://www.google.com/",
        engagements=((70_000, 40, 10),),
        click=True,
        complete=True,
        marketing=True,
    ),
    Visit("4711", "https://www.google.com/", engagements=((10_000, 80, 0),), click=True, marketing=True),
    Visit("4711", "https://www.google.com/", engagements=((20_000, 30, 0),), marketing=True),
    Visit(
        "4711",
        "https://www.finn.no/job",
        engagements=((30_000, 20, 4), (31_000, 50, 3)),
        click=True,
        complete=True,
    ),
    Visit("4711", "https://www.finn.no/job", engagements=((5_000, 10, 0),), extra_pageviews=1),
    Visit("4711", query="?utm_source=finn&utm_campaign=vinter"),
    Visit("4711", query="?utm_source=linkedin&utm_medium=social", engagements=((3_000, 0, 0),)),
    Visit("4712", engagements=((40_000, 0, 0),)),
    Visit("4712"),
    Visit("4712"),
    Visit("4713", engagements=((100_000, 0, 2),)),
]


def post_fixture(server: ReportsServer) -> list[list[dict[str, Any]]]:
    """Post every visit; return the batches sent (a test replays them)."""
    batches: list[list[dict[str, Any]]] = []
    origin = server.partner.origin
    for v in VISITS:
        token = server.consent(statistics=True, marketing=v.marketing)["token"]
        url = f"{origin}/jobb/{v.ad}{v.query}"
        job = JOBS.get(v.ad)
        pv_fields: dict[str, Any] = {"url": url, "referrer": v.referrer}
        if job:
            pv_fields["job"] = job
        pv = server.event(token, "pageview", v.ad, **pv_fields)
        events = [pv]
        for eng, scroll, act in v.engagements:
            events.append(
                server.event(
                    token,
                    "engagement",
                    v.ad,
                    url=url,
                    pageview_id=pv["event_id"],
                    engaged_ms=eng,
                    scroll=scroll,
                    activity=act,
                )
            )
        for _ in range(v.extra_pageviews):
            events.append(server.event(token, "pageview", v.ad, url=url, referrer=v.referrer))
        if v.click:
            events.append(server.event(token, "apply_click", v.ad, url=url, pageview_id=pv["event_id"]))
        server.collect(events)
        batches.append(events)
        if v.complete:  # the ATS sends the visitor back to the thanks page
            thanks = server.event(
                token, "apply_complete", v.ad, url=f"{origin}/takk", referrer="https://ats.example.test/apply"
            )
            server.collect([thanks])
            batches.append([thanks])
    for _ in range(2):
        server.consent(statistics=False, marketing=False)
    server.flush()
    return batches
