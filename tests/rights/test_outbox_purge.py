"""The outbox forgets an erased subject: queued and finished-but-unlogged deliveries and the keys of
their events leave the file (rewritten), and a pump that read a journal segment before the erasure
blanked it cannot queue their events afterwards."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from pixel_server.forwarding.base import Event
from pixel_server.forwarding.store import Delivery, OutboxStore, delivery_key


def _delivery(consent: str, channel: str = "meta") -> Delivery:
    event = Event(
        event_id=str(uuid.uuid4()), site="test", name="pageview", ts=time.time(), consent_id=consent
    )
    return Delivery(delivery_key(channel, "test", event.event_id), channel, event, time.time())


def test_drop_rewrites_the_file_and_refuses_a_late_enqueue(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path, fsync=False)
    store.open()
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    queued, sent, other = _delivery(mine), _delivery(mine, "snapchat"), _delivery(theirs)
    store.enqueue([queued, sent, other])
    store.finish([(sent, {"consent_id": mine, "status": "sent"})], time.time())
    assert store.drop({mine}, {queued.event.event_id, sent.event.event_id}) == 2
    assert [d.key for d in store.pending()] == [other.key] and store.unlogged() == {}
    assert not store.known(sent.key)
    late = _delivery(mine)  # read from a segment before it was blanked
    assert store.enqueue([late]) == []
    store.close()
    data = (tmp_path / "outbox.jsonl").read_bytes()
    assert mine.encode() not in data and queued.event.event_id.encode() not in data
    assert theirs.encode() in data
    reopened = OutboxStore(tmp_path, fsync=False)
    reopened.open()
    assert [d.key for d in reopened.pending()] == [other.key]
    reopened.close()
