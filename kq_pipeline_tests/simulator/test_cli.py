"""run_simulate serves until told to stop, prints one line per cluster and writes the kubeconfig."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import yaml

from kq_pipeline.simulator.cli import run_simulate


def test_run_simulate_serves_until_stopped(tmp_path: Path):
    out, stop, result = io.StringIO(), threading.Event(), []
    kubeconfig = tmp_path / "kc"
    t = threading.Thread(
        target=lambda: result.append(run_simulate(2, 6, kubeconfig, seed=3, tls=False, out=out, stop=stop))
    )
    t.start()
    deadline = time.monotonic() + 30
    while "kubeconfig" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["sim-0", "sim-1", "kubeconfig"]
    cfg = yaml.safe_load(kubeconfig.read_text())
    token = cfg["users"][0]["user"]["token"]
    assert token not in out.getvalue()
    url = lines[0].split()[1]
    assert (
        httpx.get(f"{url}/api/v1/pods", headers={"Authorization": f"Bearer {token}"}).json()["kind"]
        == "PodList"
    )
    stop.set()
    t.join(10)
    assert result == [0]


def test_run_simulate_rejects_zero_clusters(tmp_path: Path):
    assert run_simulate(0, 5, tmp_path / "kc", out=io.StringIO()) == 2
