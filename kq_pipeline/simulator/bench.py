"""Measure the simulator serving a large pod list: `python -m kq_pipeline.simulator.bench --pods 30000`.

The fleet runs in a child process; the parent pages through /api/v1/pods with httpx and reports wall
time and the CPU seconds each side spent, so one can see whether the client or the server limits.
"""

from __future__ import annotations

import argparse
import base64
import os
import ssl
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from kq_pipeline.simulator.process import serve_fleet_process


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    from kq_pipeline.simulator.objects import ClusterSpec

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pods", type=int, default=30000)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--http2", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        handle = serve_fleet_process([ClusterSpec(name="sim-0", pods=args.pods)], Path(tmp, "kubeconfig"))
        print(f"start (generate + serialize + listen, child process): {time.perf_counter() - t0:.2f}s")
        with handle:
            cfg = yaml.safe_load(handle.kubeconfig.read_text())
            token = cfg["users"][0]["user"]["token"]
            ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
            verify = ssl.create_default_context(cadata=ca)
            with httpx.Client(
                base_url=handle.urls["sim-0"],
                verify=verify,
                timeout=60,
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                for r in range(args.rounds):
                    srv0, cli0, w0 = (
                        _cpu_seconds(handle.process.pid),
                        time.process_time(),
                        time.perf_counter(),
                    )
                    n, pages, nbytes, cont = 0, 0, 0, None
                    while True:
                        params = {"limit": str(args.limit), **({"continue": cont} if cont else {})}
                        resp = client.get("/api/v1/pods", params=params)
                        body = resp.json()
                        n, pages, nbytes = n + len(body["items"]), pages + 1, nbytes + len(resp.content)
                        cont = body["metadata"].get("continue")
                        if not cont:
                            break
                    wall = time.perf_counter() - w0
                    srv, cli = _cpu_seconds(handle.process.pid) - srv0, time.process_time() - cli0
                    print(
                        f"round {r + 1}: {n} pods, {pages} pages, {nbytes / 1e6:.0f} MB in {wall:.2f}s "
                        f"({n / wall:,.0f} pods/s); CPU server {srv:.2f}s, client {cli:.2f}s "
                        f"(server share {srv / (srv + cli):.0%})"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
