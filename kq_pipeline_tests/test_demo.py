"""`kq demo` stops cleanly: Ctrl-C or SIGTERM end it and everything it started, also in the background."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kq_pipeline.demo import DEV_SUPERSEDED_WARNING, LogRelay, dagster_dev_env, session_members, stop_session
from kq_pipeline_tests.defs.dagster_dev import free_port, wait_for

KQ = [sys.executable, "-m", "kq_pipeline.cli"]
STOP_WITHIN_S = 15.0


def _processes_with(marker: str) -> list[str]:
    """Live processes whose environment or command line holds `marker` (the embedded PostgreSQL
    runs with a clean environment under its own user, so it never matches an environment marker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":
                continue
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in environ or marker.encode() in cmdline:
            found.append(f"{entry.name}: {cmdline.decode(errors='replace')[:160]}")
    return found


def test_stopping_a_session_ends_grandchildren_that_ignore_sigterm_and_lost_their_parent(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"
    grandchild = tmp_path / "grandchild.py"
    grandchild.write_text(
        f"import pathlib, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(120)\n"
    )
    child = tmp_path / "child.py"  # starts the grandchild and exits: the grandchild is reparented
    child.write_text(f"import subprocess, sys\nsubprocess.Popen([sys.executable, {str(grandchild)!r}])\n")
    leader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time\nsubprocess.run([sys.executable, {str(child)!r}])\n"
            "time.sleep(120)\n",
        ],
        start_new_session=True,
    )
    try:
        wait_for(lambda: ready.exists() and len(session_members(leader.pid)) == 2, 20, "the grandchild", 0.1)
        t0 = time.monotonic()
        stop_session(leader, grace_s=0.5)
        assert session_members(leader.pid) == [] and leader.returncode is not None
        assert time.monotonic() - t0 < 6
    finally:
        for pid in session_members(leader.pid):
            os.kill(pid, signal.SIGKILL)


def test_the_relay_keeps_dagsters_debug_and_info_records_in_the_log_only(tmp_path: Path) -> None:
    source = io.BytesIO(
        b"2026-12-01 22:20:11 +0000 - dagster - DEBUG - refresh_clusters - RUN_START - Started\n"
        b"2026-12-01 22:20:11 +0000 - dagster - INFO - refresh_clusters - [1/1] demo-0: ok\n"
        b"\x1b[32m2026-12-01 22:11:46 +0000\x1b[0m - dagster.daemon - \x1b[34mERROR\x1b[0m - boom\n"
        b"Traceback (most recent call last):\n"
        b"2026-12-01 22:20:13 +0000 - dagster - DEBUG - refresh_clusters - STEP_OUTPUT\n"
        b"  a continuation of that DEBUG record\n"
    )
    terminal = io.StringIO()
    relay = LogRelay(source, tmp_path / "dagster.log", terminal)
    relay.join(5)
    assert terminal.getvalue().splitlines() == [
        "\x1b[32m2026-12-01 22:11:46 +0000\x1b[0m - dagster.daemon - \x1b[34mERROR\x1b[0m - boom",
        "Traceback (most recent call last):",
    ]
    assert (tmp_path / "dagster.log").read_bytes() == source.getvalue()


def test_dagster_dev_runs_without_the_warnings_a_user_cannot_act_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONWARNINGS", "error::ResourceWarning")
    monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT", raising=False)
    env = dagster_dev_env()
    assert env["GRPC_ENABLE_FORK_SUPPORT"] == "false"
    assert env["PYTHONWARNINGS"] == f"error::ResourceWarning,{DEV_SUPERSEDED_WARNING}"
    superseded = (
        "import warnings; warnings.warn('Function `dev_command` is superseded and its usage is discouraged.')"
    )
    shown = subprocess.run([sys.executable, "-c", superseded], env=env, capture_output=True, text=True)
    assert shown.stderr == ""


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],  # ~20 s each
    ids=["SIGTERM", "SIGINT"],
)
def test_a_background_demo_stops_with_everything_it_started(tmp_path: Path, sig: signal.Signals) -> None:
    home = tmp_path / "kq"
    port = free_port()
    env = {**os.environ, "KQ_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env.pop("KQ_DATABASE_URL", None)  # the demo's own embedded PostgreSQL, in its KQ_HOME
    log = (tmp_path / "demo.out").open("w")
    # as a script's `kq demo &` (SIGINT ignored) or a service manager runs it: no terminal, no stdin
    demo = subprocess.Popen(
        [*KQ, "demo", "--clusters", "1", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:

        def ui_up() -> bool:
            assert demo.poll() is None, (tmp_path / "demo.out").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ui_up, 240, "the demo's Dagster UI")
        assert _processes_with(f"KQ_HOME={home}")  # the marker finds what the demo started

        demo.send_signal(sig)
        demo.wait(timeout=STOP_WITHIN_S)
        wait_for(
            lambda: not _processes_with(f"KQ_HOME={home}") and not _processes_with(f"-p {port} "),
            STOP_WITHIN_S,
            "every process of the demo to end",
            0.2,
        )
        output = (tmp_path / "demo.out").read_text()
        assert demo.returncode == 0, output
        assert "Traceback" not in output and "KeyboardInterrupt" not in output
        assert "SupersessionWarning" not in output and "fork_posix" not in output
        assert "embedded PostgreSQL still running on 127.0.0.1:" in output and "`kq db stop`" in output
    finally:
        for line in _processes_with(f"KQ_HOME={home}"):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        log.close()
        subprocess.run([*KQ, "db", "stop"], env=env, capture_output=True, timeout=120)
