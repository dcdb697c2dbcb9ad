"""What the routes share: built once in ``create_app`` and kept on ``app.state.jp``."""

from __future__ import annotations

from dataclasses import dataclass

from pixel_server.core.grant import VisitorTokens
from pixel_server.core.journal import Journal
from pixel_server.core.metrics import Metrics
from pixel_server.core.settings import Settings
from pixel_server.core.store import Loader, Store


@dataclass
class State:
    settings: Settings
    tokens: VisitorTokens
    metrics: Metrics
    journal: Journal
    store: Store | None = None
    loader: Loader | None = None
