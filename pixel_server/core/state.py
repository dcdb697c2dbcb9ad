"""What the routes share: built once in ``create_app`` and kept on ``app.state.jp``."""

from __future__ import annotations

from dataclasses import dataclass, field

from pixel_server.consent.log import Choices
from pixel_server.consent.revocation import Revocations
from pixel_server.core.grant import Grants
from pixel_server.core.journal import Journal
from pixel_server.core.metrics import Metrics
from pixel_server.core.settings import Settings
from pixel_server.core.store import Loader, Store


@dataclass
class State:
    settings: Settings
    grants: Grants
    metrics: Metrics
    journal: Journal
    store: Store | None = None
    loader: Loader | None = None
    revocations: Revocations = field(default_factory=Revocations)
    choices: Choices = field(default_factory=Choices)
