"""The partner dashboard (server-rendered pages over the report query layer) and the operators'
Grafana dashboards (``grafana/``)."""
