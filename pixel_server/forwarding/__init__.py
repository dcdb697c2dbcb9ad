"""Server-side forwarding of marketing-consented events to the ad channels, through a durable outbox.

``registry`` names the channels (one module each, behind :class:`~.base.Channel`); ``sender`` delivers one
mapped request with the retry classification; ``store`` is the outbox's own append-only fsynced file;
``outbox`` is the journal consumer that turns events into deliveries and writes the delivery log.
"""
