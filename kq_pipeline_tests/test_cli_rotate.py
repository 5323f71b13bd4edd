"""`kq clusters register --token-ttl` and `kq clusters rotate NAME`: the commands an operator (or a cron
job) runs to keep a target's reader token alive; mistakes end in one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from kq_pipeline.cli import main
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec


def test_register_with_a_lifetime_then_rotate_the_token(
    kq_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens"
    with serve_fleet([ClusterSpec(name="target", seed=3, pods=5)]) as fleet:
        admin = fleet.write_kubeconfig(tmp_path / "admin.yaml")
        where = ["--kubeconfig", str(admin), "--context", "target", "--token-dir", str(tokens)]
        assert main(["clusters", "register", *where, "--token-ttl", "2h"]) == 0
        assert "(in 2h)" in capsys.readouterr().out
        first = (tokens / "target.token").read_text()

        assert main(["clusters", "rotate", "target", *where]) == 0
        out = capsys.readouterr().out
        assert f"renewed in {tokens / 'target.token'} (mode 0600), expires at " in out and "(in 30d)" in out
        second = (tokens / "target.token").read_text()
        assert second != first and second.strip() not in out
        sim = fleet.clusters["target"]
        assert sim.tokens.authenticate(first.strip()) is not None  # valid until its own expiry
        assert sim.tokens.authenticate(second.strip()) is not None

        assert main(["clusters", "rotate", "nope", *where]) == 2
        assert "no such cluster: nope" in capsys.readouterr().err
        assert main(["clusters", "rotate", "target", *where, "--token-ttl", "5m"]) == 2
        assert "--token-ttl: at least 10m" in capsys.readouterr().err
    assert (tokens / "target.token").read_text() == second
