"""The site and ad pages run in two lanes (dashboards/panels.py): the pages' one statement on the calling
thread, the rest in a small pool. A failing statement fails the page and leaves no work behind it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pixel_server.core.settings import Site
from pixel_server.dashboards import panels
from pixel_server.reports import engine

SITE = Site(id="s", partner="p", origins=frozenset({"https://jobs.example"}))


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("page", ["site", "ad"])
def test_a_failing_statement_fails_the_page_after_its_lane(
    monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    finished: list[str] = []
    started = threading.Event()

    def slow_previous(*args: Any) -> engine.Report:
        started.set()
        time.sleep(0.3)
        finished.append("previous")
        return engine.Report([{"dimensions": [], "metrics": [None] * len(panels.TILES)}], {}, {}, ())

    def fail(*args: Any) -> Any:
        started.wait(5)  # the lane is running when the statement fails
        raise Boom("store unavailable")

    monkeypatch.setattr(panels, "previous_totals", slow_previous)
    for name in ("series", "realtime", "consent", "funnel", "ad_metadata"):
        monkeypatch.setattr(panels, name, lambda *a, _n=name, **k: finished.append(_n))
    monkeypatch.setattr(engine, "run_queries", fail)
    pr = panels.page_range({"range": "30d"}, SITE.timezone)
    with pytest.raises(Boom):
        if page == "site":
            panels.site_panels(None, SITE, pr)  # type: ignore[arg-type]
        else:
            panels.ad_panels(None, SITE, pr, "1")  # type: ignore[arg-type]
    # the page failed only once its lane was done: nothing keeps running for a page already answered
    assert finished[0] == "previous" and len(finished) == 4
