"""The cluster inventory: which clusters exist, where their API is, and where their credentials live.

Clusters come from a YAML file, from kubeconfig contexts, or from the command line, and are kept in
the `kq_meta.clusters` table. Only *where* a credential lives (a kubeconfig context, an env var name, a
file path) is stored, never the credential itself; and what to collect from each cluster (`collect`,
see `kq_pipeline.collect`), a fleet-wide default in the file overridden per cluster key by key.
Every row kq writes is signed (kq_pipeline/signing.py); `verified_cluster` is how the loader reads one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import psycopg
import yaml
from psycopg.types.json import Jsonb

from kq_pipeline import signing
from kq_pipeline.collect import Collect, CollectError, collect_from_mapping, merged

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
    collect: Collect = field(default_factory=Collect)
    """What to collect from this cluster (default: everything)."""

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


def _db_values(c: Cluster) -> dict[str, Any]:
    """The cluster as kq_meta.clusters' columns hold it (collect as jsonb, NULL for the default)."""
    values = asdict(c)
    values["collect"] = c.collect.to_json()
    return values


def _from_db(row: Sequence[Any]) -> Cluster:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["collect"] = Collect.from_json(values["collect"])
    return Cluster(**values)


def clusters_from_yaml(path: str | Path) -> list[Cluster]:
    """Read `clusters:` entries from a YAML inventory file (format in the README), each with its
    selection: the file's top-level `collect:` (fleet default) overridden by the entry's own."""
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
    unknown_top = set(doc) - {"clusters", "collect"}
    if unknown_top:
        raise InventoryError(f"inventory file {p}: unknown top-level keys {sorted(unknown_top)}")
    default = doc.get("collect") or {}
    if not isinstance(default, dict):
        raise InventoryError(f"inventory file {p}: the top-level collect must be a mapping")
    try:
        collect_from_mapping(default, "fleet default")  # the default alone must be valid too
    except CollectError as exc:
        raise InventoryError(f"inventory file {p}: {exc}") from None
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
        own = data.get("collect") or {}
        if not isinstance(own, dict):
            raise InventoryError(f"inventory file {p}: entry {i}: collect must be a mapping")
        where = f"cluster {data.get('name', f'entry {i}')}"
        try:
            data["collect"] = collect_from_mapping(merged(default, own), where)
            cluster = Cluster(**data)
        except CollectError as exc:
            raise InventoryError(f"inventory file {p}: {exc}") from None
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


def upsert_clusters(conn: psycopg.Connection, clusters: Iterable[Cluster], *, revive: bool = True) -> int:
    """Add or update clusters; returns how many rows were written. Unchanged rows are not rewritten.

    `revive`: an explicit add (`kq clusters add`) makes a retired cluster active again; a file sync
    passes False, so a cluster removed with `kq clusters remove` stays removed though a file lists it."""
    stored = (*_COLUMNS, "signature")
    cols = ", ".join(stored)
    placeholders = ", ".join(f"%({c})s" for c in stored)
    data_cols = [c for c in stored if c != "name"]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in data_cols)
    changed = (
        f"({', '.join(f'kq_meta.clusters.{c}' for c in data_cols)}) "
        f"IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in data_cols)})"
    )
    when = (
        f"kq_meta.clusters.retired_at IS NOT NULL OR {changed}"
        if revive
        else f"kq_meta.clusters.retired_at IS NULL AND {changed}"
    )
    n = 0
    with conn.transaction(), conn.cursor() as cur:
        for c in clusters:
            cur.execute(
                f"INSERT INTO kq_meta.clusters ({cols}) VALUES ({placeholders}) "
                f"ON CONFLICT (name) DO UPDATE SET {updates}, updated_at = now(), retired_at = NULL "
                f"WHERE {when}",
                {
                    **_db_values(c),
                    "collect": None if c.collect.is_default else Jsonb(c.collect.to_json()),
                    "signature": signing.sign(_db_values(c)),
                },
            )
            n += cur.rowcount
    return n


@dataclass(frozen=True)
class FileSync:
    """What syncing an inventory file changed, and which of its clusters it left removed."""

    written: list[str]
    """Added or changed."""
    removed: list[str]
    """Listed in the file, but removed with `kq clusters remove`: the file does not re-add them."""


def sync_clusters(conn: psycopg.Connection, clusters: Sequence[Cluster]) -> FileSync:
    """Apply an inventory file's clusters: add new ones, update changed ones, and touch nothing else.

    Runs on every sensor tick, so an unchanged file costs one SELECT and writes nothing (not even row
    locks); removed clusters stay removed until an explicit `kq clusters add`."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(_COLUMNS)}, signature, retired_at IS NOT NULL FROM kq_meta.clusters"
            " WHERE name = ANY(%s)",
            ([c.name for c in clusters],),
        )
        current = {row[0]: (tuple(row[: len(_COLUMNS) + 1]), row[-1]) for row in cur.fetchall()}
        removed = sorted(c.name for c in clusters if c.name in current and current[c.name][1])
        todo = [  # new, or changed (in the file, or in the database: the file is the truth)
            c
            for c in clusters
            if c.name not in current
            or (
                not current[c.name][1]
                and current[c.name][0] != (*_db_values(c).values(), signing.sign(_db_values(c)))
            )
        ]
        if todo:
            upsert_clusters(conn, todo, revive=False)
    return FileSync(written=[c.name for c in todo], removed=removed)


def removed_clusters(conn: psycopg.Connection, names: Iterable[str]) -> list[str]:
    """Those of `names` that were removed (retired) from the inventory, sorted."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT name FROM kq_meta.clusters WHERE name = ANY(%s) AND retired_at IS NOT NULL ORDER BY name",
            (list(names),),
        )
        return [n for (n,) in cur.fetchall()]


def removed_but_listed(inventory_file: Path, names: list[str]) -> str:
    """Why clusters an inventory file lists are not loaded (the sensor's tick, `kq clusters list`)."""
    return (
        f"{len(names)} cluster(s) in {inventory_file} ignored because removed with `kq clusters remove`: "
        f"{', '.join(names)} (`kq clusters add` re-adds)"
    )


def active_clusters(conn: psycopg.Connection) -> list[Cluster]:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM kq_meta.clusters WHERE retired_at IS NULL ORDER BY name"
        )
        return [_from_db(row) for row in cur.fetchall()]


def get_cluster(conn: psycopg.Connection, name: str) -> Cluster | None:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM kq_meta.clusters WHERE name = %s AND retired_at IS NULL",
            (name,),
        )
        row = cur.fetchone()
    return _from_db(row) if row else None


def verified_cluster(conn: psycopg.Connection, name: str) -> Cluster | None:
    """An active cluster as the loader may use it: its row must carry this key's signature
    (signing.SigningError otherwise, whose message says what to do)."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(_COLUMNS)}, signature FROM kq_meta.clusters"
            " WHERE name = %s AND retired_at IS NULL",
            (name,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    cluster = _from_db(row[:-1])
    signing.verify(_db_values(cluster), row[-1])
    return cluster


def trust_clusters(conn: psycopg.Connection, names: Sequence[str] | None = None) -> list[str]:
    """Sign the rows of `names` (None: every active cluster) as they are now: for rows an older
    kq-pipeline wrote, or a change made in the database on purpose. Returns the names signed."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM kq_meta.clusters WHERE retired_at IS NULL"
            " AND (%(all)s OR name = ANY(%(names)s)) ORDER BY name FOR UPDATE",
            {"all": names is None, "names": list(names or ())},
        )
        clusters = [_from_db(row) for row in cur.fetchall()]
        for c in clusters:
            cur.execute(
                "UPDATE kq_meta.clusters SET signature = %s WHERE name = %s",
                (signing.sign(_db_values(c)), c.name),
            )
    return [c.name for c in clusters]


def retire_cluster(conn: psycopg.Connection, name: str) -> bool:
    """Mark a cluster removed; its rows stay until the sensor's retire policy deletes them."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE kq_meta.clusters SET retired_at = now(), updated_at = now() "
            "WHERE name = %s AND retired_at IS NULL",
            (name,),
        )
        return cur.rowcount == 1


def loaded_since_added(conn: psycopg.Connection, names: Sequence[str]) -> list[str]:
    """Those of `names` with a load attempt recorded since they were last added or changed."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.name FROM kq_meta.clusters c WHERE c.name = ANY(%s) AND EXISTS ("
            " SELECT 1 FROM kq_meta.loads l WHERE l.cluster_name = c.name AND l.started_at >= c.updated_at)"
            " ORDER BY c.name",
            (list(names),),
        )
        return [r[0] for r in cur.fetchall()]


def set_cluster_uid(conn: psycopg.Connection, name: str, cluster_uid: str) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("UPDATE kq_meta.clusters SET cluster_uid = %s WHERE name = %s", (cluster_uid, name))


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


def inventory_file_names() -> tuple[Path, list[str]] | None:
    """KQ_INVENTORY_FILE and the names it lists; None if unset or unreadable (the sensor reports that)."""
    path = default_inventory_file()
    if path is None:
        return None
    try:
        return path, [c.name for c in clusters_from_yaml(path)]
    except InventoryError:
        return None
