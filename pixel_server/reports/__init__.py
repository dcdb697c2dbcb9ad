"""Partner reports (issue #9): a read-only query layer over ClickHouse with the privacy floor applied once.

``query.py`` parses and validates a request into a :class:`~pixel_server.reports.query.Query`;
``sql.py`` builds the statements; ``engine.py`` runs them and applies ``floor.py``; ``api.py`` serves
them as JSON/CSV; ``auth.py`` decides who sees which site; ``openapi.py`` documents it all.
"""
