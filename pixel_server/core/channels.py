"""The channel registry: the third-party ad and analytics channels a site may use.

One frozen `ChannelSpec` per channel holds the facts the consent banner shows a
visitor before they allow marketing (who processes what, where, which cookies
for how long, a link to the processor's privacy policy), the first-party
cookie prefixes the banner deletes on withdrawal, and how the banner starts
the channel's tag (tag kind + the vendor's documented script URL).

Sources for each entry (the vendors' own documentation):

- ga4: Google tag (gtag.js) install snippet; "[GA4] Cookie usage on websites"
  (`_ga`, `_ga_<container-id>`: 2 years; Chrome caps any cookie at 400 days).
- meta: Meta Pixel base code (`connect.facebook.net/en_US/fbevents.js`,
  `fbq('init', id)`); Conversions API "fbp and fbc parameters" (`_fbp`,
  `_fbc`, first-party, 90 days).
- linkedin: Insight Tag (`snap.licdn.com/li.lms-analytics/insight.min.js`,
  `_linkedin_partner_id`); LinkedIn cookie table (`li_fat_id` 30 days).
- snapchat: Snap Pixel base code (`sc-static.net/scevent.min.js`,
  `snaptr('init', uuid)`); `_scid` 13 months.
- bidtheatre: Bid Theatre help centre, "Conversion Tracking"
  (`adsby.bidtheatre.com/js/asx_track.min.js`, `asxtrack.config =
  {conversionId, advertiserId}; asxtrack.callConversion()`) and "User tracking"
  (its user-id cookie is written on its own domain, third-party, for segments
  and conversions — none on the partner's domain).

The public JSON shape is the site config `channels` item in ARCHITECTURE.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

TagKind = Literal["gtag", "meta", "linkedin", "snapchat", "bidtheatre"]


@dataclass(frozen=True)
class ChannelCookie:
    """A first-party cookie the channel's tag sets on the page's domain.

    `name` may hold `{tail}`: the configured id after its first `-`
    (GA4 names its session cookie `_ga_` + the measurement id without `G-`).
    """

    name: str
    days: int


@dataclass(frozen=True)
class ConfigKey:
    """One key of a channel's site configuration and the form its value must have."""

    pattern: re.Pattern[str]
    example: str
    required: bool = True
    upper: bool = False
    lower: bool = False


@dataclass(frozen=True)
class ChannelSpec:
    """Everything the server and banner need to know about one channel."""

    channel: str
    name: str
    processor: str
    location: str
    privacy_url: str
    purpose_nb: str
    purpose_en: str
    cookies: tuple[ChannelCookie, ...]
    cookie_prefixes: tuple[str, ...]
    tag_kind: TagKind
    tag_src: str
    hosts: tuple[str, ...]
    config: Mapping[str, ConfigKey]

    def tag_url(self, cfg: Mapping[str, str]) -> str:
        """The script URL for a validated config (`{id}` filled in)."""
        return self.tag_src.format(**cfg)


def _digits(lo: int, hi: int) -> re.Pattern[str]:
    return re.compile(rf"[0-9]{{{lo},{hi}}}")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EU_US_DPF = "EU–US Data Privacy Framework"

_SPECS: tuple[ChannelSpec, ...] = (
    ChannelSpec(
        channel="ga4",
        name="Google Analytics",
        processor="Google Ireland Limited",
        location=f"EU/EØS og USA ({_EU_US_DPF})",
        privacy_url="https://policies.google.com/privacy",
        purpose_nb=(
            "Måler besøk og hendelser på siden (sidevisninger, klikk, enhet, omtrentlig sted) "
            "og kobler dem til Googles annonsetjenester for måling av kampanjer."
        ),
        purpose_en=(
            "Measures visits and events on the page (page views, clicks, device, approximate "
            "location) and links them to Google's advertising services for campaign measurement."
        ),
        cookies=(
            ChannelCookie("_ga", 730),
            ChannelCookie("_ga_{tail}", 730),
            ChannelCookie("_gcl_au", 90),
        ),
        cookie_prefixes=("_ga", "_gid", "_gat", "_gcl_", "_dc_gtm_"),
        tag_kind="gtag",
        tag_src="https://www.googletagmanager.com/gtag/js?id={id}",
        hosts=(
            "www.googletagmanager.com",
            "www.google-analytics.com",
            "region1.google-analytics.com",
            "analytics.google.com",
            "stats.g.doubleclick.net",
        ),
        config=MappingProxyType(
            {"id": ConfigKey(re.compile(r"G-[A-Z0-9]{4,16}"), "G-ABC123XYZ", upper=True)}
        ),
    ),
    ChannelSpec(
        channel="meta",
        name="Meta (Facebook og Instagram)",
        processor="Meta Platforms Ireland Limited",
        location=f"EU/EØS og USA ({_EU_US_DPF})",
        privacy_url="https://www.facebook.com/privacy/policy/",
        purpose_nb=(
            "Meta-pikselen registrerer besøket og søknadsklikk for å måle og målrette annonser "
            "på Facebook og Instagram. Meta bruker i tillegg egne informasjonskapsler på facebook.com."
        ),
        purpose_en=(
            "The Meta pixel records the visit and apply clicks to measure and target ads on "
            "Facebook and Instagram. Meta also uses its own cookies on facebook.com."
        ),
        cookies=(ChannelCookie("_fbp", 90), ChannelCookie("_fbc", 90)),
        cookie_prefixes=("_fbp", "_fbc"),
        tag_kind="meta",
        tag_src="https://connect.facebook.net/en_US/fbevents.js",
        hosts=("connect.facebook.net", "www.facebook.com"),
        config=MappingProxyType({"id": ConfigKey(_digits(5, 20), "123456789012345")}),
    ),
    ChannelSpec(
        channel="linkedin",
        name="LinkedIn Insight Tag",
        processor="LinkedIn Ireland Unlimited Company",
        location=f"EU/EØS og USA ({_EU_US_DPF})",
        privacy_url="https://www.linkedin.com/legal/privacy-policy",
        purpose_nb=(
            "LinkedIn Insight Tag registrerer besøket for å måle annonser, vise demografi om "
            "besøkende og målrette annonser på LinkedIn. LinkedIn bruker i tillegg egne "
            "informasjonskapsler på linkedin.com."
        ),
        purpose_en=(
            "The LinkedIn Insight Tag records the visit to measure ads, report visitor "
            "demographics and target ads on LinkedIn. LinkedIn also uses its own cookies on "
            "linkedin.com."
        ),
        cookies=(ChannelCookie("li_fat_id", 30),),
        cookie_prefixes=("li_",),
        tag_kind="linkedin",
        tag_src="https://snap.licdn.com/li.lms-analytics/insight.min.js",
        hosts=("snap.licdn.com", "px.ads.linkedin.com", "www.linkedin.com"),
        config=MappingProxyType(
            {
                # _linkedin_partner_id in the Insight Tag snippet
                "id": ConfigKey(_digits(3, 12), "1234567"),
                # the Insight Tag conversion apply_complete counts toward, with its event id
                # (lintrk('track', {conversion_id, event_id})): a rule of its own, not the server's
                # conversion_rule — LinkedIn dedups across one rule per source [CHANNELS.md L5]
                "conversion": ConfigKey(_digits(1, 12), "11563522", required=False),
            }
        ),
    ),
    ChannelSpec(
        channel="snapchat",
        name="Snap Pixel",
        processor="Snap B.V.",
        location=f"EU/EØS og USA ({_EU_US_DPF})",
        privacy_url="https://values.snap.com/privacy/privacy-policy",
        purpose_nb=(
            "Snap-pikselen registrerer besøket og søknadsklikk for å måle og målrette annonser på Snapchat."
        ),
        purpose_en="The Snap pixel records the visit and apply clicks to measure and target ads on Snapchat.",
        cookies=(ChannelCookie("_scid", 395), ChannelCookie("_scid_r", 395)),
        cookie_prefixes=("_scid", "_sctr"),
        tag_kind="snapchat",
        tag_src="https://sc-static.net/scevent.min.js",
        hosts=("sc-static.net", "tr.snapchat.com"),
        config=MappingProxyType({"id": ConfigKey(_UUID, "c9215353-76c9-4423-a615-21b4ac088222", lower=True)}),
    ),
    ChannelSpec(
        channel="bidtheatre",
        name="Bid Theatre",
        processor="BidTheatre AB",
        location="EU/EØS (Sverige)",
        privacy_url="https://www.bidtheatre.com/privacy-policy/",
        purpose_nb=(
            "Bid Theatre kjøper annonseplass for stillingsannonser og måler om visninger og klikk "
            "fører til søknader. Bid Theatre lagrer en tilfeldig bruker-ID i en informasjonskapsel "
            "på sitt eget domene (bidtheatre.com), ikke på dette nettstedet. Bare nettleseren din "
            "sender data til Bid Theatre; serveren vår sender ingenting dit."
        ),
        purpose_en=(
            "Bid Theatre buys ad space for job ads and measures whether views and clicks lead to "
            "applications. Bid Theatre keeps a random user id in a cookie on its own domain "
            "(bidtheatre.com), not on this site. Only your browser sends data to Bid Theatre; our "
            "server sends it nothing."
        ),
        cookies=(),
        cookie_prefixes=(),
        tag_kind="bidtheatre",
        tag_src="https://adsby.bidtheatre.com/js/asx_track.min.js",
        hosts=("adsby.bidtheatre.com", "match.adsby.bidtheatre.com"),
        config=MappingProxyType(
            {
                # advertiserId in Bid Theatre's tracker invocation script
                "id": ConfigKey(_digits(1, 10), "584"),
                # conversionId: fired on the site's thanks page when configured
                "conversion": ConfigKey(_digits(1, 10), "892", required=False),
            }
        ),
    ),
)

REGISTRY: Mapping[str, ChannelSpec] = MappingProxyType({s.channel: s for s in _SPECS})


def validate_channel_config(channel: str, cfg: Mapping[str, object]) -> dict[str, str]:
    """Check one site's config for `channel`; return it normalized.

    Raises ValueError naming the channel and key when the channel is unknown,
    a required key is missing, a key is unknown, or a value has the wrong form.
    """
    spec = REGISTRY.get(channel)
    if spec is None:
        raise ValueError(f"channels: unknown channel {channel!r} (known: {', '.join(REGISTRY)})")
    for key in cfg:
        if key not in spec.config:
            raise ValueError(f"channels.{channel}.{key}: unknown key (allowed: {', '.join(spec.config)})")
    out: dict[str, str] = {}
    for key, rule in spec.config.items():
        raw = cfg.get(key)
        if raw is None:
            if rule.required:
                raise ValueError(f"channels.{channel}.{key}: required, e.g. {rule.example!r}")
            continue
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ValueError(f"channels.{channel}.{key}: must be a string, e.g. {rule.example!r}")
        value = str(raw).strip()
        if rule.upper:
            value = value.upper()
        if rule.lower:
            value = value.lower()
        if not rule.pattern.fullmatch(value):
            raise ValueError(
                f"channels.{channel}.{key}: {value!r} does not look like {rule.example!r} "
                f"(pattern {rule.pattern.pattern})"
            )
        out[key] = value
    return out


def public_channel(channel: str, cfg: Mapping[str, str]) -> dict[str, object]:
    """The site-config `channels` item (ARCHITECTURE.md) for a validated config."""
    spec = REGISTRY[channel]
    cfg = validate_channel_config(channel, cfg)
    tail = cfg["id"].split("-", 1)[-1]
    tag: dict[str, object] = {"kind": spec.tag_kind, **cfg, "src": spec.tag_url(cfg)}
    return {
        "id": spec.channel,
        "name": spec.name,
        "processor": spec.processor,
        "location": spec.location,
        "privacy_url": spec.privacy_url,
        "purpose": {"nb": spec.purpose_nb, "en": spec.purpose_en},
        "cookies": [{"name": c.name.format(tail=tail), "days": c.days} for c in spec.cookies],
        "cookie_prefixes": list(spec.cookie_prefixes),
        "tag": tag,
    }
