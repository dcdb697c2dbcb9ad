"""The operator's way (requests by e-mail): ``/api/v1/admin/subjects/{id}?site=`` with an admin token,
and ``jobpixel subject export|erase --site SITE ID`` with the server stopped. ID: visitor or consent id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.harness import SECRETS
from tests.rights.conftest import ADMIN_TOKEN, PARTNER_TOKEN, RightsServer


def admin(
    s: RightsServer, method: str, sid: str, token: str | None = ADMIN_TOKEN, **q: str
) -> httpx.Response:
    h = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"site": "test", **q}
    return httpx.request(method, f"{s.url}/api/v1/admin/subjects/{sid}", params=params, headers=h, timeout=60)


def test_admin_api_by_consent_id_and_by_visitor_id(rights_server: RightsServer) -> None:
    s = rights_server
    a, b = s.consent(), s.consent()
    s.post_events(a["token"], 2)
    s.post_events(b["token"], 1)
    ga, gb = s.state.grants.verify(a["token"]), s.state.grants.verify(b["token"])
    assert ga is not None and gb is not None
    assert admin(s, "GET", ga.consent_id, token=None).status_code == 401
    assert admin(s, "GET", ga.consent_id, token="jpx_wrong-token-0123456789").status_code == 401
    assert admin(s, "GET", ga.consent_id, token=PARTNER_TOKEN).status_code == 403
    assert admin(s, "DELETE", ga.consent_id, token=PARTNER_TOKEN).status_code == 403
    assert admin(s, "GET", "not-a-uuid").status_code == 400
    assert admin(s, "GET", ga.consent_id, site="nope").status_code == 404

    by_consent = admin(s, "GET", ga.consent_id).json()
    by_visitor = admin(s, "GET", str(ga.visitor_id)).json()
    for doc in (by_consent, by_visitor):
        events = doc["tables"]["events"] + doc["tables"].get("journal.events", [])
        assert len(events) == 2 and {e["visitor_id"] for e in events} == {str(ga.visitor_id)}
        assert doc["subject"]["consent_ids"] == [ga.consent_id]

    r = admin(s, "DELETE", ga.consent_id)
    assert r.status_code == 200, r.text
    erased = r.json()["erased"]
    assert erased.get("events", 0) + erased.get("journal.events", 0) == 2
    s.flush()
    assert s.events(visitor_id=str(ga.visitor_id)) == []
    assert len(s.events(visitor_id=str(gb.visitor_id))) == 1
    log = s.query("SELECT requested_by, site_id FROM ${db}.erasure_log")
    assert log == [{"requested_by": "operator", "site_id": "test"}]


def _config_file(s: RightsServer, tmp_path: Path) -> Path:
    path = tmp_path / "jobpixel.toml"
    path.write_text(
        f"""
[server]
data_dir = "{s.data_dir}"
[partners.acme]
name = "Acme"
[sites.test]
partner = "acme"
origins = ["{s.partner.origin}"]
[sites.shop]
partner = "acme"
origins = ["{s.partner.origin}"]
"""
    )
    return path


def jobpixel(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process (it takes the data_dir lock, as in production)."""
    env = {**os.environ, **SECRETS}
    return subprocess.run(
        [sys.executable, "-m", "pixel_server", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_subject_export_and_erase(rights_server: RightsServer, tmp_path: Path) -> None:
    s = rights_server
    a, b = s.consent(), s.consent()
    s.post_events(a["token"], 1)
    s.flush()
    s.post_events(a["token"], 1)  # stays in the journal: the server stops before its next flush
    s.post_events(b["token"], 1)
    ga = s.state.grants.verify(a["token"])
    assert ga is not None
    s.stop()
    cfg = str(_config_file(s, tmp_path))

    out = jobpixel("subject", "export", "--site", "test", "--config", cfg, str(ga.visitor_id))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["format_version"] == 1
    assert len(doc["tables"]["events"]) + len(doc["tables"].get("journal.events", [])) == 2
    out = jobpixel("subject", "export", "--csv", "--site", "test", "--config", cfg, ga.consent_id)
    assert out.returncode == 0 and out.stdout.startswith("table,row,column,value"), out.stderr

    out = jobpixel("subject", "erase", "--site", "test", "--config", cfg, ga.consent_id)
    assert out.returncode == 0, out.stderr
    erased = json.loads(out.stdout)["erased"]
    assert erased.get("events", 0) + erased.get("journal.events", 0) == 2
    assert jobpixel("subject", "erase", "--site", "test", "--config", cfg, "nope").returncode == 2

    s.start()
    s.flush()
    assert s.events(visitor_id=str(ga.visitor_id)) == []
    assert len(s.events()) == 1  # B's
    assert s.collect_one(a["token"]).status_code == 403  # revoked through the erasure log
