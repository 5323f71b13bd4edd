"""A fleet served from a child process: kubeconfig written, faults switched over HTTP, clean stop."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import httpx
import pytest
import yaml

from kq_pipeline.simulator import serve_fleet_process
from kq_pipeline.simulator.objects import ClusterSpec


def test_child_process_fleet(tmp_path: Path):
    specs = [ClusterSpec(name="sim-0", pods=10), ClusterSpec(name="sim-1", pods=5)]
    with serve_fleet_process(specs, tmp_path / "kc") as handle:
        cfg = yaml.safe_load((tmp_path / "kc").read_text())
        assert [c["name"] for c in cfg["contexts"]] == ["sim-0", "sim-1"]
        ca = base64.b64decode(cfg["clusters"][1]["cluster"]["certificate-authority-data"]).decode()
        token = cfg["users"][1]["user"]["token"]
        with httpx.Client(
            base_url=handle.urls["sim-1"],
            verify=ssl.create_default_context(cadata=ca),
            headers={"Authorization": f"Bearer {token}"},
        ) as c:
            assert len(c.get("/api/v1/pods").json()["items"]) == 5
            assert handle.fault("sim-1", "unauthorized")["unauthorized"] is True
            assert c.get("/api/v1/pods").status_code == 401
    assert not handle.process.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.urls["sim-1"] + "/version", verify=False)


@pytest.mark.slow
def test_thirty_thousand_pods_page_through_in_one_snapshot(tmp_path: Path):
    with serve_fleet_process([ClusterSpec(name="big", pods=30000)], tmp_path / "kc") as handle:
        cfg = yaml.safe_load((tmp_path / "kc").read_text())
        ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        headers = {"Authorization": f"Bearer {cfg['users'][0]['user']['token']}"}
        with httpx.Client(
            base_url=handle.urls["big"],
            verify=ssl.create_default_context(cadata=ca),
            headers=headers,
            timeout=60,
        ) as c:
            uids, rvs, cont = set(), set(), None
            while True:
                body = c.get(
                    "/api/v1/pods", params={"limit": 500, **({"continue": cont} if cont else {})}
                ).json()
                uids.update(p["metadata"]["uid"] for p in body["items"])
                rvs.add(body["metadata"]["resourceVersion"])
                if not (cont := body["metadata"].get("continue")):
                    break
    assert len(uids) == 30000 and len(rvs) == 1
