"""The one list of ad-network click ids (query keys, any case → canonical name).

A click id ties a page view to one ad click, and through it to one person at the
ad network: it is kept only behind a marketing grant and stripped from the stored
``url``, ``referrer`` and ``props`` otherwise (issue #7, section 2). The order is
the order of preference when a URL carries several. Forwarding reads this list too.
"""

from __future__ import annotations

CLICK_ID_KEYS: dict[str, str] = {
    "gclid": "gclid",  # Google Ads
    "gbraid": "gbraid",  # Google Ads, iOS app → web
    "wbraid": "wbraid",  # Google Ads, web → app
    "dclid": "dclid",  # Google Display & Video 360 / Campaign Manager
    "gclsrc": "gclsrc",  # Google Ads (source of the gclid)
    "_gl": "_gl",  # Google linker (carries the _ga client id and the gclid across domains)
    "srsltid": "srsltid",  # Google Merchant Center
    "fbclid": "fbclid",  # Meta
    "msclkid": "msclkid",  # Microsoft Advertising
    "li_fat_id": "li_fat_id",  # LinkedIn
    "sccid": "ScCid",  # Snapchat
    "ttclid": "ttclid",  # TikTok
    "twclid": "twclid",  # X / Twitter
    "epik": "epik",  # Pinterest
    "rdt_cid": "rdt_cid",  # Reddit
    "qclid": "qclid",  # Quora
    "yclid": "yclid",  # Yandex
    "igshid": "igshid",  # Instagram share id
    "mc_eid": "mc_eid",  # Mailchimp: the recipient
    "_hsenc": "_hsenc",  # HubSpot: the recipient
    "mkt_tok": "mkt_tok",  # Marketo: the recipient
    "s_kwcid": "s_kwcid",  # Adobe Advertising
    "ef_id": "ef_id",  # Adobe Advertising
    "irclickid": "irclickid",  # impact.com
}
