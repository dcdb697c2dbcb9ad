"""``POST /collect``: parse → validate → drop/put steps → durable spool."""
