"""A stand-in for `basequery` running the remote-access kubequery extension, faithful at the process boundary.

What it shares with the real pair: the command line `runquery.sh` builds (`--json`, `-S`, the
extension socket, autoload and flag files), the query `select * from <table>;` on stdin, the remote
cluster from the environment (KUBEQUERY_ADDR, KUBEQUERY_TOKEN, KUBEQUERY_CA_FILE, ...), rows listed
over HTTPS with the bearer token and verified TLS, a JSON array of row objects on stdout (basequery
prints every column, "" where kubequery's row has no key), "Error: ..." on stderr and exit 1 when
the API server refuses (401/403) or the table does not exist.

What it is not: osquery/SQLite, nor kubequery's Go code. Where the rows come from:
- by default, the listed objects through `kq_pipeline.rows.kubequery_rows`, the project's own
  re-implementation of kubequery's row builders: enough to test the plumbing around kubequery,
  proof of nothing about kubequery's rows;
- with FAKE_BASEQUERY_RECORDED=<cases dir>, the rows kubequery itself produced in its own Go tests
  (`expected_rows` of kq_pipeline_tests/data/kubequery/cases/<table>.json), with cluster_name and
  cluster_uid set as the remote-access patch sets them (KUBEQUERY_CLUSTER_NAME; KUBEQUERY_CLUSTER_UID,
  else the kube-system namespace's uid). A table without recorded rows is an error (exit 1).

Test hooks (set by the test's wrapper script, never by the code under test):
  FAKE_BASEQUERY_LOG          append one JSON line per call: argv, /proc cmdlines, env names, token seen
  FAKE_BASEQUERY_MODE         ok | exit | sleep | malformed | empty | nothing | extra_column | raw
  FAKE_BASEQUERY_FAULT_TABLE  apply MODE to this table only (default: every table)
  FAKE_BASEQUERY_RECORDED     answer with kubequery's recorded rows from this cases directory
"""

from __future__ import annotations

import json
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from kq_pipeline.registry import UnknownTableError  # noqa: E402
from kq_pipeline.registry import table as registry_table  # noqa: E402
from kq_pipeline.rows import kubequery_rows  # noqa: E402

QUERY = re.compile(r"\s*select \* from ([a-z_]+);\s*", re.IGNORECASE)


class Refused(Exception):
    """The API server said no; kubequery's client-go error text goes to stderr."""


def _cmdline(pid: int | str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _log(entry: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_BASEQUERY_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


class Api:
    """A minimal client-go: bearer token, verified TLS against the given CA, paged lists."""

    def __init__(self, addr: str, token: str, ca_file: str | None, insecure: bool, server_name: str | None):
        self.addr = addr.rstrip("/")
        self.token = token
        self.ctx = ssl.create_default_context(cafile=ca_file or None)
        if insecure:
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE
        self.server_name = server_name

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.addr + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise Refused("Unauthorized") from None
            if exc.code == 404:
                raise Refused("the server could not find the requested resource") from None
            raise Refused(f"{exc.code}: {exc.read()[:300].decode(errors='replace')}") from None

    def list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            sep = "&" if "?" in path else "?"
            page = self.get(f"{path}{sep}limit=500" + (f"&continue={cont}" if cont else ""))
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue") or ""
            if not cont:
                return items

    def path_of(self, group: str | None, api_version: str, resource: str) -> str:
        """kubequery 1.1.1 lists each kind at the version compiled into it (client-go 0.21), served or not."""
        if group in (None, "", "core"):
            return f"/api/v1/{resource}"
        return f"/apis/{api_version}/{resource}"

    def discovery(self) -> list[dict[str, Any]]:
        lists = [self.get("/api/v1")]
        for group in self.get("/apis").get("groups") or []:
            for v in group.get("versions") or []:
                lists.append(self.get(f"/apis/{v['groupVersion']}"))
        return lists


def _objects(api: Api, name: str) -> list[dict[str, Any]]:
    if name == "kubernetes_info":
        return [api.get("/version")]
    if name == "kubernetes_api_resources":
        return api.discovery()
    src = registry_table(name).source
    assert src.resource and src.api_version
    return api.list(api.path_of(src.api_group, src.api_version, src.resource))


def _recorded_rows(cases: Path, name: str, cluster_name: str, cluster_uid: str) -> list[dict[str, str]]:
    """kubequery's own rows for `name`, as the remote-access patch would name the cluster."""
    path = cases / f"{name}.json"
    case = json.loads(path.read_text()) if path.is_file() else {}
    if "expected_rows" not in case:
        raise Refused(f"no recorded kubequery rows for {name} in {cases}")
    return [
        {**row, "cluster_name": cluster_name, "cluster_uid": cluster_uid} for row in case["expected_rows"]
    ]


def _render(name: str, rows: list[dict[str, str]], raw: bool) -> str:
    if raw:
        return json.dumps(rows, indent=2)
    columns = registry_table(name).column_names
    return json.dumps([{c: row.get(c, "") for c in columns} for row in rows], indent=2)


def main(argv: list[str]) -> int:
    flags = dict(a.split("=", 1) if "=" in a else (a, "") for a in argv)
    query = sys.stdin.read()
    m = QUERY.fullmatch(query)
    table_name = m.group(1) if m else None
    token = os.environ.get("KUBEQUERY_TOKEN", "")
    _log(
        {
            "pid": os.getpid(),
            "argv": [sys.argv[0], *argv],
            "cmdline": _cmdline("self"),
            "parent_cmdline": _cmdline(os.getppid()),
            "env_names": sorted(os.environ),
            "token_in_env": bool(token),
            "table": table_name,
            "socket": flags.get("--extensions_socket"),
            "tmpdir": os.environ.get("TMPDIR"),
        }
    )
    for needed in ("--json", "-S", "--extensions_require", "--extensions_socket", "--flagfile"):
        if needed not in flags:
            print(f"basequery (stand-in): missing {needed}", file=sys.stderr)
            return 64
    for f in ("--flagfile", "--extensions_autoload"):
        if not os.access(flags.get(f, ""), os.R_OK):
            print(f"basequery (stand-in): cannot read {f}={flags.get(f)}", file=sys.stderr)
            return 64
    # Like osquery: the extension manager socket appears in the directory runquery.sh chose.
    Path(flags["--extensions_socket"]).touch()
    if table_name is None:
        print(f"Error: near {query[:20]!r}: syntax error", file=sys.stderr)
        return 1
    try:
        registry_table(table_name)
    except UnknownTableError:
        print(f"Error: no such table: {table_name}", file=sys.stderr)
        return 1

    mode = os.environ.get("FAKE_BASEQUERY_MODE", "ok")
    if os.environ.get("FAKE_BASEQUERY_FAULT_TABLE", table_name) != table_name:
        mode = "ok"
    if mode == "exit":
        print("Error: extension kubequery crashed (stand-in fault)", file=sys.stderr)
        return 3
    if mode == "sleep":
        time.sleep(60)
    if mode == "nothing":
        return 0
    if mode == "malformed":
        sys.stdout.write('[\n  {"name": "kube-sys')
        return 0
    if mode == "empty":
        sys.stdout.write("[\n\n]\n")
        return 0

    addr = os.environ.get("KUBEQUERY_ADDR")
    if not addr or not token:
        # What unpatched kubequery says outside a cluster.
        print(
            "panic: unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
            "KUBERNETES_SERVICE_PORT must be defined",
            file=sys.stderr,
        )
        return 2
    api = Api(
        addr,
        token,
        os.environ.get("KUBEQUERY_CA_FILE"),
        os.environ.get("KUBEQUERY_INSECURE_SKIP_TLS_VERIFY") == "1",
        os.environ.get("KUBEQUERY_TLS_SERVER_NAME"),
    )
    try:
        uid = os.environ.get("KUBEQUERY_CLUSTER_UID")
        uid = uid or api.get("/api/v1/namespaces/kube-system")["metadata"]["uid"]
        cluster_name = os.environ.get("KUBEQUERY_CLUSTER_NAME", "")
        recorded = os.environ.get("FAKE_BASEQUERY_RECORDED")
        if recorded:
            rows = _recorded_rows(Path(recorded), table_name, cluster_name, uid)
        else:
            rows = kubequery_rows(
                table_name, _objects(api, table_name), cluster_name=cluster_name, cluster_uid=uid
            )
    except (Refused, urllib.error.URLError, ssl.SSLError, OSError) as exc:
        print(f"Error: kubequery: {exc}", file=sys.stderr)
        return 1
    if mode == "extra_column" and rows:
        rows[0]["not_a_column"] = "x"
    sys.stdout.write(_render(table_name, rows, raw=mode in ("raw", "extra_column")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
