"""``/consent``: the consent log, grants and revocation; the banner it serves (``banner/``)."""
