"""Soak the everyday path: `kq demo` with its UI, a fast schedule and sensor, and CLI loads beside it.

The acceptance run of issue 13 (10 minutes, several `kq load` from the CLI while the UI's daemon
runs the schedule every minute and the sensor every 5 s); then SIGTERM to the backgrounded demo.
It passes when no sensor or schedule tick failed, no run failed, every CLI load exited 0, the
embedded PostgreSQL was started exactly once (server.log), and no process of the demo is left
after SIGTERM except the embedded PostgreSQL, which stays up by design (stopped at the end).

    python tools/soak_demo.py --minutes 10 --loads 5

Everything lives in a fresh temporary KQ_HOME; ~/.kq is never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

KQ = [sys.executable, "-m", "kq_pipeline.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_of(home: Path) -> list[tuple[int, str]]:
    """Live processes whose environment or command line names this KQ_HOME (everything the demo
    started; the PostgreSQL server gets a clean environment but its data directory is on its command
    line)."""
    marker = f"KQ_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if marker in (entry / "environ").read_bytes().split(b"\0") or str(home) in cmd:
                found.append((int(entry.name), cmd.strip()[:120]))
        except OSError:
            continue
    return found


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"UI did not come up at {url} within {timeout_s:.0f}s")


def failed_ticks_and_runs(env: dict[str, str]) -> tuple[int, int, int, int]:
    """(ticks, failed ticks, runs, failed runs) recorded in the demo's Dagster instance."""
    code = """
import json
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.scheduler.instigation import TickStatus
inst = DagsterInstance.get()
ticks = failed = 0
for state in inst.all_instigator_state():
    for t in inst.get_ticks(state.instigator_origin_id, state.selector_id, limit=100000):
        ticks += 1
        if t.status == TickStatus.FAILURE:
            failed += 1
            print("FAILED TICK", state.instigator_name, (t.error.message if t.error else "")[:300])
runs = inst.get_runs()
bad = [r for r in runs if r.status == DagsterRunStatus.FAILURE]
for r in bad:
    print("FAILED RUN", r.run_id, r.tags.get("kq/reason"))
print(json.dumps([ticks, failed, len(runs), len(bad)]))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    for line in lines[:-1]:
        print("  " + line)
    import json

    return tuple(json.loads(lines[-1]))  # type: ignore[return-value]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--clusters", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the temporary KQ_HOME")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kq-soak-"))
    port = free_port()
    env = {
        **os.environ,
        "KQ_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "KQ_REFRESH_CRON": "*/1 * * * *",
        "KQ_SENSOR_INTERVAL_S": "5",
    }
    env.pop("KQ_DATABASE_URL", None)
    log = open(home / "demo.log", "w")  # noqa: SIM115 - lives as long as the demo
    print(f"KQ_HOME={home}  UI http://127.0.0.1:{port}")
    demo = subprocess.Popen(
        [*KQ, "demo", "--clusters", str(args.clusters), "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    verdicts: dict[str, bool] = {}
    try:
        wait_http(f"http://127.0.0.1:{port}/server_info", 180)
        t0 = time.monotonic()
        duration = args.minutes * 60
        load_codes = []
        for i in range(args.loads):
            target = t0 + duration * (i + 0.5) / args.loads
            time.sleep(max(0.0, target - time.monotonic()))
            p = subprocess.run([*KQ, "load"], env=env, capture_output=True, text=True)
            load_codes.append(p.returncode)
            print(f"  kq load #{i + 1}: exit {p.returncode}, {len(p.stdout.splitlines())} lines")
            if p.returncode:
                print(p.stdout[-2000:], p.stderr[-2000:])
        time.sleep(max(0.0, t0 + duration - time.monotonic()))
        ticks, bad_ticks, runs, bad_runs = failed_ticks_and_runs(env)
        server_log = (home / "postgres" / "data" / "server.log").read_text(errors="replace")
        starts = server_log.count("starting PostgreSQL")
        lock_clashes = server_log.count('lock file "postmaster.pid" already exists')
        print(f"  ticks {ticks} (failed {bad_ticks}), runs {runs} (failed {bad_runs})")
        print(f"  server.log: {starts} start(s), {lock_clashes} postmaster.pid clash(es)")
        verdicts["no failed tick"] = ticks > 0 and bad_ticks == 0
        verdicts["no failed run"] = runs > 0 and bad_runs == 0
        verdicts["every CLI load exit 0"] = load_codes == [0] * args.loads
        verdicts["one server start, no clash"] = starts == 1 and lock_clashes == 0
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
        log.close()
    time.sleep(2)
    left = [(pid, cmd) for pid, cmd in processes_of(home) if "postgres" not in cmd]
    for pid, cmd in left:
        print(f"  left behind: {pid} {cmd}")
    verdicts["SIGTERM leaves no process (but PostgreSQL)"] = not left and demo.returncode is not None
    subprocess.run([*KQ, "db", "stop"], env=env, capture_output=True)
    verdicts["nothing left after kq db stop"] = not processes_of(home)
    print("\n-- last lines of kq demo's output --")
    print("\n".join((home / "demo.log").read_text(errors="replace").splitlines()[-12:]))
    print()
    for name, ok in verdicts.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
