"""The outbox as its own process, for the SIGKILL test: ``python -m tests.forwarding.outbox_process TMP URL``.

It runs the background loop over the fake journal in ``TMP/journal`` with ``TMP/data`` as data_dir until
it is killed, logging deliveries to ``TMP/log.jsonl``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pixel_server.forwarding.outbox import CONSUMER, Outbox
from tests.forwarding.support import FakeJournal, FileLog, Revocations, forwarding_settings


async def main(tmp: Path, endpoint: str) -> None:
    settings = forwarding_settings(tmp / "data", endpoint, channels=("meta", "snapchat"))
    journal = FakeJournal(tmp / "journal")
    box = Outbox(settings, journal.cursor(CONSUMER), Revocations(), FileLog(tmp / "log.jsonl"))
    await box.start()
    print("started", flush=True)
    while True:
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
