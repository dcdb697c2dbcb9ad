"""The ``ads`` table read side: one ad's latest job metadata (the forwarding outbox's ``AdLookup``)."""

from __future__ import annotations

from typing import Any

from pixel_server.core.store import Store

AD_FIELDS = ("title", "category", "location", "employer", "employment_type", "date_posted", "valid_through")


def ad_job(store: Store, site_id: str, ad_id: str) -> dict[str, Any]:
    """``{title, category, …, words}`` as the newest pageview of that ad described it; ``{}`` if none."""
    rows = store.query(
        "SELECT max(latest) AS m FROM ${db}.ads WHERE site_id = {site:String} AND ad_id = {ad:String} "
        "GROUP BY site_id, ad_id",
        {"site": site_id, "ad": ad_id},
    )
    if not rows:
        return {}
    m = rows[0]["m"]
    return {**{k: m[k] for k in AD_FIELDS if m.get(k)}, "words": int(m.get("words") or 0)}
