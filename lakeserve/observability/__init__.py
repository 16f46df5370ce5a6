"""Observability as code: the metrics vocabulary, alert rules and dashboards of the platform."""
