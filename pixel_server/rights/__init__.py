"""Data-subject rights (issue #10): access, portability and erasure (``/me``, the CLI, the admin API),
the erasure log, and retention (TTL from configuration)."""
