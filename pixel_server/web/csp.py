"""The Content-Security-Policy a partner's page needs for jobpixel (issue #11).

What each directive must allow, and why:

- ``script-src``: the pixel server (``p.js``, and ``b.js`` which p.js adds) and, per enabled
  channel, the host of its tag (``channels.ChannelSpec.tag_src``). A page with a nonce-based
  ``script-src`` puts its nonce on the ``p.js`` tag instead: p.js passes it on to ``b.js``,
  every channel tag and every gated script it starts (the IDL ``nonce`` property, which
  survives nonce hiding).
- ``connect-src``: the pixel server (site config, ``/collect``, ``/consent``) and each channel's
  hosts (its tag reports there).
- ``img-src``, ``frame-src``: each channel's hosts (tracking pixels, sync frames); jobpixel itself
  loads no image and no frame.
- ``style-src``: nothing: the banner's CSS is a constructable stylesheet, which ``style-src``
  does not govern; where a browser lacks those, a ``<style>`` with the page's nonce.
- Trusted Types: with ``require-trusted-types-for 'script'``, a ``trusted-types`` list (if the
  page has one) must name the policy ``jobpixel``.
"""

from __future__ import annotations

import urllib.parse

from pixel_server.core import channels
from pixel_server.core.settings import Site

DIRECTIVES = ("script-src", "connect-src", "img-src", "style-src", "frame-src")
TRUSTED_TYPES_POLICY = "jobpixel"


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def partner_sources(site: Site, pixel_origin: str) -> dict[str, list[str]]:
    """The sources each directive must allow for ``site`` (beyond the page's own ``'self'``)."""
    pixel = pixel_origin.rstrip("/")
    sources: dict[str, list[str]] = {d: [] for d in DIRECTIVES}
    sources["script-src"].append(pixel)
    sources["connect-src"].append(pixel)
    for name in site.channels:
        spec = channels.REGISTRY[name]
        hosts = [f"https://{h}" for h in spec.hosts]
        sources["script-src"].append(_host(spec.tag_src))
        for directive in ("connect-src", "img-src", "frame-src"):
            sources[directive].extend(hosts)
    return {d: list(dict.fromkeys(v)) for d, v in sources.items()}


def partner_csp(site: Site, pixel_origin: str) -> str:
    """A complete strict policy for a career page that only runs jobpixel: ``default-src 'self'``
    plus what ``partner_sources`` lists. A partner merges the sources into its own policy."""
    parts = ["default-src 'self'"]
    for directive, extra in partner_sources(site, pixel_origin).items():
        parts.append(" ".join([directive, "'self'", *extra]))
    return "; ".join(parts)


def describe(site: Site, pixel_origin: str) -> list[str]:
    """The lines ``jobpixel check-config`` prints for a site."""
    lines = [f"Content-Security-Policy for site {site.id} (pages on {', '.join(sorted(site.origins))}):"]
    for directive, extra in partner_sources(site, pixel_origin).items():
        lines.append(f"  {directive} {' '.join(extra) if extra else '(nothing from jobpixel)'}")
    lines.append(f"  a complete policy: {partner_csp(site, pixel_origin)}")
    lines.append("  nonce-based script-src: put the nonce on the p.js tag; jobpixel passes it on")
    lines.append(
        "  require-trusted-types-for 'script': a trusted-types list must name "
        f"'{TRUSTED_TYPES_POLICY}' (Trusted Types policy)"
    )
    return lines
