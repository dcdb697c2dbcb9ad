"""schemathesis over the rights operations of /api/v1/openapi.json, with valid credentials (the
visitor's grant, the admin token) and invalid ones: no 5xx, every answer as documented.
(tests/reports/test_openapi.py runs every operation with a partner token.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from pixel_server.reports.openapi import document
from pixel_server.rights.api import Limiter
from tests.harness import PartnerSite
from tests.rights.conftest import ADMIN_TOKEN, RightsServer

schema = schemathesis.openapi.from_dict(document()).include(path_regex=r"^/(me|api/v1/admin/)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RightsServer, str, str]]:
    partner = PartnerSite()
    s = RightsServer(tmp_path_factory.mktemp("rights-schemathesis") / "data", partner)
    s.start()
    s.app.state.rights_limiter = Limiter(limit=1_000_000)  # the limiter has its own test
    a = s.consent()
    s.post_events(a["token"], 3)
    yield s, a["token"], a["consent_id"]
    s.stop()
    partner.close()


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_rights_api_conforms(case: schemathesis.Case, server: tuple[RightsServer, str, str]) -> None:
    s, grant, consent_id = server
    positive = case.meta is not None and case.meta.generation.mode.name == "POSITIVE"
    valid = hash(repr(case.query) + repr(case.path_parameters)) % 3 != 0
    if case.path == "/me":
        token = grant if valid else grant[:-4] + "AAAA"
    else:
        token = ADMIN_TOKEN if valid else "jpx_not-a-token-0123456789"
        if positive and valid and case.path_parameters and hash(repr(case.query)) % 2 == 0:
            case.path_parameters["id"] = consent_id
    if positive and valid and isinstance(case.query, dict) and hash(repr(case.path_parameters)) % 2 == 0:
        case.query["site"] = "test"
    resp = case.call(base_url=s.url, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code < 500, resp.text[:500]
    case.validate_response(resp)
