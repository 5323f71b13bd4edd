"""The cluster inventory: which clusters exist, where their API is, and where their credentials live.

Clusters come from a YAML file, from kubeconfig contexts, or from the command line, and are kept in
the `kq_clusters` table. Only *where* a credential lives (a kubeconfig context, an env var name, a
file path) is stored, never the credential itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import psycopg
import yaml

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NAME_RULE = "1-63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit"

Extractor = Literal["native", "kubequery"]
EXTRACTORS: tuple[str, ...] = ("native", "kubequery")


class InventoryError(ValueError):
    """A user mistake in the inventory (bad name, bad file): reported as a message, not a traceback."""


def validate_name(name: str) -> str:
    """Cluster names become Dagster partition keys and SQL values, so they are kept to a safe set."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InventoryError(f"invalid cluster name {name!r}: use {NAME_RULE}")
    return name


def name_from_context(context: str) -> str:
    """A valid cluster name derived from a kubeconfig context name (e.g. 'kind-Dev_1' -> 'kind-dev-1')."""
    candidate = re.sub(r"[^a-z0-9-]+", "-", context.lower()).strip("-")[:63].strip("-")
    return validate_name(candidate)


@dataclass(frozen=True)
class Cluster:
    name: str
    server: str
    kubeconfig: str | None = None
    context: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    ca_data: str | None = None
    insecure_skip_tls_verify: bool = False
    extractor: str = "native"
    source: str = "cli"

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.extractor not in EXTRACTORS:
            raise InventoryError(f"cluster {self.name}: extractor must be one of {EXTRACTORS}")
        if not self.kubeconfig and not (self.token_env or self.token_file):
            raise InventoryError(
                f"cluster {self.name}: say how to authenticate: a kubeconfig context, token_env or token_file"
            )
        if not self.kubeconfig and not self.server.startswith(("https://", "http://")):
            raise InventoryError(f"cluster {self.name}: server must be an http(s) URL, got {self.server!r}")


_COLUMNS = tuple(f.name for f in fields(Cluster))


def clusters_from_yaml(path: str | Path) -> list[Cluster]:
    """Read `clusters:` entries from a YAML inventory file (format in the README)."""
    p = Path(path).expanduser()
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise InventoryError(f"inventory file not found: {p}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"inventory file {p} is not valid YAML: {exc}") from None
    entries = (doc or {}).get("clusters") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise InventoryError(f"inventory file {p}: expected a top-level 'clusters:' list")
    out: list[Cluster] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InventoryError(f"inventory file {p}: entry {i} is not a mapping")
        unknown = set(entry) - set(_COLUMNS) - {"insecure-skip-tls-verify"}
        if unknown:
            raise InventoryError(f"inventory file {p}: entry {i} has unknown keys {sorted(unknown)}")
        data: dict[str, Any] = dict(entry)
        if "insecure-skip-tls-verify" in data:
            data["insecure_skip_tls_verify"] = data.pop("insecure-skip-tls-verify")
        if data.get("kubeconfig"):
            data["kubeconfig"] = str((p.parent / Path(data["kubeconfig"]).expanduser()).resolve())
            data.setdefault("server", "")
        for key in ("token_file", "ca_file"):
            if data.get(key):
                data[key] = str((p.parent / Path(data[key]).expanduser()).resolve())
        data["source"] = "yaml"
        try:
            cluster = Cluster(**data)
        except TypeError as exc:
            raise InventoryError(f"inventory file {p}: entry {i}: {exc}") from None
        if cluster.name in seen:
            raise InventoryError(f"inventory file {p}: duplicate cluster name {cluster.name!r}")
        seen.add(cluster.name)
        out.append(cluster)
    return out


def clusters_from_kubeconfig(
    path: str | Path, contexts: Sequence[str] | None = None, names: Sequence[str] | None = None
) -> list[Cluster]:
    """One cluster per kubeconfig context (all contexts unless some are named)."""
    from kq_pipeline.kube.kubeconfig import list_contexts

    p = Path(path).expanduser().resolve()
    available = dict(list_contexts(p))
    wanted = list(contexts) if contexts else list(available)
    if names and len(names) != len(wanted):
        raise InventoryError("--name must be given once per --context")
    out: list[Cluster] = []
    for i, ctx in enumerate(wanted):
        if ctx not in available:
            raise InventoryError(f"kubeconfig {p} has no context {ctx!r} (it has: {', '.join(available)})")
        name = validate_name(names[i]) if names else name_from_context(ctx)
        out.append(
            Cluster(name=name, server=available[ctx], kubeconfig=str(p), context=ctx, source="kubeconfig")
        )
    return out


def upsert_clusters(conn: psycopg.Connection, clusters: Iterable[Cluster]) -> int:
    """Add or update clusters; re-adding a retired cluster makes it active again."""
    cols = ", ".join(_COLUMNS)
    placeholders = ", ".join(f"%({c})s" for c in _COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "name")
    n = 0
    with conn.transaction(), conn.cursor() as cur:
        for c in clusters:
            cur.execute(
                f"INSERT INTO kq_clusters ({cols}) VALUES ({placeholders}) "
                f"ON CONFLICT (name) DO UPDATE SET {updates}, updated_at = now(), retired_at = NULL",
                asdict(c),
            )
            n += 1
    return n


def active_clusters(conn: psycopg.Connection) -> list[Cluster]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM kq_clusters WHERE retired_at IS NULL ORDER BY name")
        return [Cluster(**dict(zip(_COLUMNS, row, strict=True))) for row in cur.fetchall()]


def get_cluster(conn: psycopg.Connection, name: str) -> Cluster | None:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM kq_clusters WHERE name = %s AND retired_at IS NULL", (name,)
        )
        row = cur.fetchone()
    return Cluster(**dict(zip(_COLUMNS, row, strict=True))) if row else None


def retire_cluster(conn: psycopg.Connection, name: str) -> bool:
    """Mark a cluster removed; its rows stay until the sensor's retire policy deletes them."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE kq_clusters SET retired_at = now(), updated_at = now() "
            "WHERE name = %s AND retired_at IS NULL",
            (name,),
        )
        return cur.rowcount == 1


def set_cluster_uid(conn: psycopg.Connection, name: str, cluster_uid: str) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("UPDATE kq_clusters SET cluster_uid = %s WHERE name = %s", (cluster_uid, name))


def access_for(cluster: Cluster):  # -> kq_pipeline.kube.ClusterAccess
    """How to reach a cluster: its kubeconfig context, or server + token reference + CA."""
    from kq_pipeline.kube.access import ClusterAccess, TokenSource
    from kq_pipeline.kube.kubeconfig import access_from_kubeconfig

    if cluster.kubeconfig:
        return access_from_kubeconfig(cluster.kubeconfig, cluster.context)
    token = TokenSource(env=cluster.token_env, file=cluster.token_file)
    return ClusterAccess(
        name=cluster.name,
        server=cluster.server,
        ca_data=cluster.ca_data,
        ca_file=cluster.ca_file,
        token=token,
        insecure_skip_tls_verify=cluster.insecure_skip_tls_verify,
    )


def default_inventory_file() -> Path | None:
    value = os.environ.get("KQ_INVENTORY_FILE")
    return Path(value).expanduser() if value else None
