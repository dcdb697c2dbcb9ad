"""The OpenAPI 3.1 document for ``/api/v1`` (served at ``/api/v1/openapi.json``), built from the same
allow-lists the parser uses, so the two cannot drift."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pixel_server.reports.query import (
    DIMENSIONS,
    FILTER_OPS,
    MAX_DIMENSIONS,
    MAX_FILTER_VALUES,
    MAX_LIMIT,
    MAX_VALUE_LEN,
    METRICS,
    RANGES,
    TIME_DIMENSIONS,
)

_DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_DATE_RANGE = {
    "description": "A keyword, or [from, to] as local dates in the site's time zone (both included, at most "
    "2 years).",
    "oneOf": [
        {"type": "string", "enum": list(RANGES)},
        {"type": "array", "items": _DATE, "minItems": 2, "maxItems": 2},
    ],
}
_FILTERS = {
    "type": "array",
    "maxItems": 20,
    "description": "[op, dimension, [values]]; `contains` is case-insensitive; time dimensions cannot be "
    "filtered.",
    "items": {
        "type": "array",
        "prefixItems": [
            {"type": "string", "enum": list(FILTER_OPS)},
            {"type": "string", "enum": [d for d in DIMENSIONS if d not in TIME_DIMENSIONS]},
            {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_FILTER_VALUES,
                "items": {"type": "string", "maxLength": MAX_VALUE_LEN},
            },
        ],
        "minItems": 3,
        "maxItems": 3,
    },
}
_SITE = {"type": "string", "minLength": 1, "maxLength": 64, "description": "The site id"}
_ERROR = {
    "type": "object",
    "required": ["error", "field", "detail"],
    "properties": {
        "error": {
            "type": "string",
            "enum": [
                "invalid",
                "unauthorized",
                "not_found",
                "unavailable",
                "unsupported_media_type",
                "too_large",
                "forbidden",  # rights: a partner token on the admin API
                "rate_limited",  # rights
            ],
        },
        "field": {"type": ["string", "null"], "description": "The request field at fault"},
        "detail": {"type": "string"},
    },
}
_ROW = {
    "type": "object",
    "required": ["dimensions", "metrics"],
    "properties": {
        "dimensions": {"type": "array", "items": {"type": "string"}},
        "metrics": {"type": "array", "items": {"type": ["number", "null"]}},
    },
}
_REPORT = {
    "type": "object",
    "required": ["results", "meta", "query"],
    "properties": {
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
        "meta": {
            "type": "object",
            "description": "k_floor; folded_rows (rows under k folded into `(other)`); other_row (whether "
            "the "
            "`(other)` row is shown); total_rows; timezone; time_labels (every bucket, with a time "
            "dimension); rollup (whether the hourly pre-aggregation answered it, or the raw events)",
        },
        "query": {"type": "object", "description": "The query as run: defaults filled in, absolute dates"},
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "A field is missing or malformed; `field` names it",
        401: "No valid API token",
        404: "No such site, or not one of yours",
        413: "Body over 64 KiB",
        415: "Send application/json",
        503: "The store is not reachable",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _post(summary: str, schema: str, description: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": description,
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
            },
            "responses": {
                "200": {
                    "description": "The report. With `Accept: text/csv`: the same rows as CSV (dimensions, "
                    "then metrics).",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Report"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **_errors(400, 401, 404, 413, 415, 503),
            },
        }
    }


FLOOR = (
    "Privacy floor: a row counted over fewer than the site's `k_floor` distinct visitors never shows its "
    "numbers; such rows fold into one `(other)` row, shown only when it reaches k; when exactly one row "
    "would "
    "fold, the next smallest folds too. A total under k has every metric null."
)


def _rights_paths() -> dict[str, Any]:
    from pixel_server.rights.api import openapi_paths  # rights (issue #10): /me and the admin subject API

    return openapi_paths()


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobpixel partner reports",
            "version": "1",
            "description": "Aggregated reports per job ad, never personal data. " + FLOOR,
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "jobpixel new-token"},
                "grant": {"type": "http", "scheme": "bearer", "description": "the visitor's grant (rights)"},
            },
            "schemas": {
                "Error": _ERROR,
                "Row": _ROW,
                "Report": _REPORT,
                "QueryRequest": {
                    "type": "object",
                    "required": ["site", "metrics"],
                    "additionalProperties": False,
                    "properties": {
                        "site": _SITE,
                        "date_range": _DATE_RANGE,
                        "metrics": {
                            "type": "array",
                            "minItems": 1,
                            "uniqueItems": True,
                            "items": {"type": "string", "enum": list(METRICS)},
                            "description": "time_on_ad: median engaged seconds per pageview; scroll_depth: "
                            "mean max "
                            "scroll %; activity: mean active 5-second windows per pageview; "
                            "readers/read_rate: engaged "
                            "≥ a third of the ad's reading time at 200 words/min, or scrolled ≥ 75 %; "
                            "apply_clicks, "
                            "applications: unique visitors; apply_rate, conversion_rate: % of visitors",
                        },
                        "dimensions": {
                            "type": "array",
                            "maxItems": MAX_DIMENSIONS,
                            "uniqueItems": True,
                            "items": {"type": "string", "enum": list(DIMENSIONS)},
                            "description": "At most one time dimension; time:hour only with realtime, today "
                            "or one day",
                        },
                        "filters": _FILTERS,
                        "order_by": {
                            "type": "array",
                            "maxItems": 5,
                            "items": {
                                "type": "array",
                                "prefixItems": [
                                    {"type": "string"},
                                    {"type": "string", "enum": ["asc", "desc"]},
                                ],
                                "minItems": 2,
                                "maxItems": 2,
                            },
                        },
                        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    },
                },
                "FunnelRequest": {
                    "type": "object",
                    "required": ["site"],
                    "additionalProperties": False,
                    "properties": {"site": _SITE, "date_range": _DATE_RANGE, "filters": _FILTERS},
                },
                "ConsentRatesRequest": {
                    "type": "object",
                    "required": ["site"],
                    "additionalProperties": False,
                    "properties": {
                        "site": _SITE,
                        "date_range": _DATE_RANGE,
                        "dimensions": {
                            "type": "array",
                            "uniqueItems": True,
                            "items": {"type": "string", "enum": ["time:day", "category"]},
                        },
                    },
                },
                "Sites": {
                    "type": "object",
                    "required": ["sites"],
                    "properties": {
                        "sites": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["site", "partner", "timezone", "k_floor"],
                                "properties": {
                                    "site": {"type": "string"},
                                    "partner": {"type": "string"},
                                    "timezone": {"type": "string"},
                                    "k_floor": {"type": "integer"},
                                },
                            },
                        }
                    },
                },
            },
        },
        "paths": {
            "/api/v1/query": _post(
                "Metrics by dimensions (Plausible Stats API v2 shape)",
                "QueryRequest",
                "Rows: `{dimensions: [...], metrics: [...]}` in the order asked. " + FLOOR,
            ),
            "/api/v1/funnel": _post(
                "Funnel: view → read → apply click → application",
                "FunnelRequest",
                "One row per step: [step] → [visitors, conversion_rate (of step 1), conversion_rate_step, "
                "dropoff, "
                "dropoff_percentage]; a step under k shows null, and so does everything derived from it.",
            ),
            "/api/v1/consent-rates": _post(
                "Consent rates per day and category",
                "ConsentRatesRequest",
                "Rows [day, category] → [choices, granted, rate %] from the consent log; the floor counts "
                "distinct consent ids.",
            ),
            "/api/v1/sites": {
                "get": {
                    "summary": "The sites this token may read",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "Sites",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Sites"}}
                            },
                        },
                        **_errors(401),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
            **_rights_paths(),
        },
    }
