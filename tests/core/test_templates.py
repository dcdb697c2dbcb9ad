"""Site patterns are path templates compiled to safe, anchored regexes (issue #7 §5)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixel_server.core import settings as settings_mod
from pixel_server.core.settings import ConfigError, compile_path_template
from tests.harness import SECRETS, config_dict

# (template, path + query, the ad id the pixel takes, or None when it does not match)
CASES = [
    ("/stilling/{ad}", "/stilling/12345", "12345"),
    ("/stilling/{ad}", "/stilling/12345?utm_source=finn&gclid=x", "12345"),
    ("/stilling/{ad}", "/stilling/12345/", None),
    ("/stilling/{ad}", "/stilling/", None),
    ("/stilling/{ad}", "/x/stilling/12345", None),  # anchored at the start
    ("/stilling/{ad}", "/stillingXfoo/1", None),
    ("/jobb/{ad}/*", "/jobb/4711/pixel_ad.html", "4711"),
    ("/jobb/{ad}/*", "/jobb/4711/", "4711"),
    ("/jobb/{ad}/*", "/jobb/4711", None),
    ("/jobb/*/{ad}", "/jobb/salg/99?x=1", "99"),
    ("/jobb/*/{ad}", "/jobb/a/b/99", None),  # '*' inside a template stays in its segment
    ("/jobb/{ad}.html", "/jobb/77.html", "77"),
    ("/jobb/{ad}.html", "/jobb/77xhtml", None),  # '.' is a dot, not any character
    ("/s%C3%B8k/{ad}", "/s%C3%B8k/5", "5"),
    ("/takk*", "/takk", ""),
    ("/takk*", "/takk-for-soknaden?ref=ats", ""),
    ("/takk*", "/takk/pixel_ad.html", ""),
    ("/takk*", "/jobb/takk", None),
    ("/takk-for-soknaden", "/takk-for-soknaden?x=1", ""),
    ("/takk-for-soknaden", "/takk-for-soknaden/steg2", None),
]


@pytest.mark.parametrize(("template", "path", "ad"), CASES)
def test_templates_match_as_documented_in_python(template: str, path: str, ad: str | None) -> None:
    m = re.search(compile_path_template(template), path)  # JavaScript's String.match is a search
    assert (None if m is None else (m.group(1) or "") if m.groups() else "") == ad


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("/jobb/(a+)+$", "not allowed"),  # the ReDoS pattern of issue #7
        ("/jobb/(\\d+)", "not allowed"),  # a former free regex
        ("a++", "starting with '/'"),
        ("/jobb/{ad}*", "cannot follow"),
        ("/jobb/**", "cannot follow"),
        ("/jobb/{ad}{ad}", "cannot follow"),
        ("/a/{ad}/b/{ad}", "once"),
        ("/jobb/{id}", "not allowed"),
        ("/jobb/[0-9]+", "not allowed"),
        ("/jobb?id={ad}", "not allowed"),
        ("/" + "a" * 300, "longer than"),
    ],
)
def test_anything_but_a_template_is_refused(template: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        compile_path_template(template)


def test_ad_pattern_needs_the_ad() -> None:
    with pytest.raises(ValueError, match="needs"):
        compile_path_template("/stilling/*", ad=True)
    assert compile_path_template("/stilling/*") == "^/stilling/.*"


def test_no_compiled_template_backtracks_on_a_crafted_path() -> None:
    """Every quantifier is on a character class and two never touch: linear time."""
    for template in ("/jobb/{ad}/*", "/a*b*c*d/{ad}", "/jobb/*-x/{ad}"):
        rx = re.compile(compile_path_template(template))
        assert not re.search(r"\)[*+?]|[*+]\)?[*+]", rx.pattern)  # no nested or stacked quantifiers
        started = time.perf_counter()
        rx.search("/" + "a" * 2000 + "!")
        rx.search("/jobb/" + "-" * 2000 + "/")
        assert time.perf_counter() - started < 0.05


def test_check_config_refuses_a_regex_with_the_key_and_the_way(tmp_path: Path) -> None:
    cfg = config_dict(tmp_path / "data", "https://jobs.example.no", ad_pattern="/jobb/(a+)+$")
    with pytest.raises(ConfigError, match=r"sites\.test\.ad_pattern: .*path template"):
        settings_mod.from_mapping(cfg, SECRETS, tmp_path)
    toml = tmp_path / "bad.toml"
    toml.write_text(
        '[partners.p]\nname = "P"\n[sites.s]\npartner = "p"\norigins = ["https://a.no"]\n'
        'ad_pattern = "/jobb/(a+)+$"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "pixel_server", "check-config", "--config", str(toml)],
        capture_output=True,
        text=True,
        env={**SECRETS, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert "sites.s.ad_pattern" in out.stderr and "'/stilling/{ad}'" in out.stderr


def test_site_config_sends_the_compiled_regex_under_the_names_the_pixel_reads(tmp_path: Path) -> None:
    s = settings_mod.from_mapping(config_dict(tmp_path, "https://jobs.example.no"), SECRETS, tmp_path)
    site = s.sites["test"]
    assert (site.ad_template, site.ad_pattern) == ("/jobb/{ad}/*", "^/jobb/([^/?#]+)/.*")
    assert (site.thanks_template, site.thanks_pattern) == ("/takk*", "^/takk.*")
