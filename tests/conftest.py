"""Shared fixtures; the live server and the partner site they start are in ``tests/harness.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pixel_server.core.settings import Settings
from tests.harness import (
    BANNER_BUDGET_GZ,
    PIXEL_BUDGET_GZ,
    LiveServer,
    PartnerSite,
    make_settings,
    script_sizes,
)


@pytest.fixture(scope="session")
def partner_site() -> Iterator[PartnerSite]:
    site = PartnerSite()
    yield site
    site.close()


@pytest.fixture
def pixel_server(tmp_path: Path, partner_site: PartnerSite) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "data", partner_site)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    try:
        sizes = script_sizes()
    except OSError as exc:
        terminalreporter.write_line(f"script sizes: unavailable ({exc})")
        return
    terminalreporter.write_sep("-", "script sizes (gzip -9)")
    terminalreporter.write_line(f"p.js (pixel):  {sizes['p.js']:>5} B of {PIXEL_BUDGET_GZ} B budget")
    terminalreporter.write_line(
        f"b.js (banner): {sizes['b.js']:>5} B of {BANNER_BUDGET_GZ} B budget (JS + CSS + nb/nn/en)"
    )
