"""What the routes share: built once in ``create_app`` and kept on ``app.state.jp``."""

from __future__ import annotations

from dataclasses import dataclass

from pixel_server.identity import VisitorTokens
from pixel_server.metrics import Metrics
from pixel_server.settings import Settings
from pixel_server.spool import Spool
from pixel_server.storage import Store
from pixel_server.writer import Writer


@dataclass
class State:
    settings: Settings
    tokens: VisitorTokens
    metrics: Metrics
    spool: Spool
    store: Store | None = None
    writer: Writer | None = None
    store_error: str | None = None
