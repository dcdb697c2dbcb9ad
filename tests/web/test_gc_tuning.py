"""The server tunes the cyclic garbage collector once started (issue #7: p99, events/s; bench/README.md)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pixel_server.cli as cli
import pixel_server.web.app as app_mod
from tests.harness import make_settings, run_async


def while_started(app: Any, check: Callable[[], Any]) -> Any:
    """Run the app's ASGI lifespan: start it, call ``check``, shut it down; ``check``'s result."""

    async def main() -> Any:
        inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        task = asyncio.create_task(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
        )
        await inbox.put({"type": "lifespan.startup"})
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
        try:
            return check()
        finally:
            await inbox.put({"type": "lifespan.shutdown"})
            assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
            await task

    return run_async(main())


@pytest.fixture
def restore_gc() -> Any:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_a_started_server_freezes_start_up_and_collects_less_often(tmp_path: Path, restore_gc: None) -> None:
    gc.unfreeze()
    app = app_mod.create_app(make_settings(tmp_path / "data"), tune_gc=True)
    assert gc.get_freeze_count() == 0  # not at import or build time: once the lifespan has started
    threshold, frozen = while_started(app, lambda: (gc.get_threshold(), gc.get_freeze_count()))
    assert threshold == app_mod.GC_THRESHOLD
    assert frozen > 10_000


def test_without_it_the_collector_is_left_alone(tmp_path: Path, restore_gc: None) -> None:
    """Tests and embedders build the app without ``tune_gc``: their process's collector is theirs."""
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    app = app_mod.create_app(make_settings(tmp_path / "data"))
    assert while_started(app, lambda: (gc.get_threshold(), gc.get_freeze_count())) == ((700, 10, 10), 0)


def test_serve_asks_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(app_mod, "create_app", lambda s, **kw: seen.update(kw) or object())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr(cli, "_hold_data_lock", lambda s: None)
    assert cli.serve(make_settings(tmp_path / "data"), "127.0.0.1", 0) == 0
    assert seen.get("tune_gc") is True
