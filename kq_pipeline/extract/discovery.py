"""Read API discovery once per poll and decide at which version to list each table's kind.

kubequery was built against Kubernetes 1.21 (batch/v1beta1 CronJob, policy/v1beta1 PDB, ...).
A current cluster serves newer versions and has dropped some kinds. The rule: the registry's
version if served, else the group's preferred version if it serves the kind, else the newest
served version of the same group and kind (the fields kubequery reads kept their JSON shape).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kq_pipeline.kube.client import KubeClient
from kq_pipeline.kube.errors import KubeError
from kq_pipeline.registry import Source

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_STABILITY = {None: 3, "beta": 2, "alpha": 1}


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, then higher numbers (v2 > v1 > v1beta2)."""
    m = _VERSION_RE.match(version)
    if not m:
        return (0, 0, 0, version)
    major, stability, minor = m.groups()
    return (_STABILITY[stability], int(major), int(minor or 0), version)


@dataclass(frozen=True)
class ListTarget:
    group_version: str
    resource: str
    kind: str

    @property
    def path(self) -> str:
        prefix = "/api" if "/" not in self.group_version else "/apis"
        return f"{prefix}/{self.group_version}/{self.resource}"


@dataclass
class Discovery:
    resource_lists: list[dict[str, Any]] = field(default_factory=list)
    """APIResourceList documents in discovery order (what kubernetes_api_resources reads)."""
    preferred: dict[str, str] = field(default_factory=dict)
    """API group ("" for core) -> preferred version."""
    failed: dict[str, str] = field(default_factory=dict)
    """group/version -> why its resource list could not be read (e.g. a broken aggregated API)."""

    def served_versions(self, group: str, resource: str) -> dict[str, str]:
        """version -> kind for every served version of group/resource (subresources excluded)."""
        out: dict[str, str] = {}
        for rl in self.resource_lists:
            gv = rl.get("groupVersion", "")
            g, _, v = gv.rpartition("/")
            if g != group:
                continue
            for r in rl.get("resources") or ():
                if r.get("name") == resource:
                    out[v] = r.get("kind", "")
        return out

    def resolve(self, source: Source) -> ListTarget | None:
        """Where to list a table's kind, or None when the cluster does not serve it."""
        group = "" if source.api_group in (None, "core") else source.api_group
        wanted = (source.group_version or "").rpartition("/")[2]
        served = {
            v: k
            for v, k in self.served_versions(group, source.resource or "").items()
            if not source.kind or k == source.kind
        }
        if not served:
            return None
        if wanted in served:
            version = wanted
        elif self.preferred.get(group) in served:
            version = self.preferred[group]
        else:
            version = max(served, key=version_priority)
        gv = f"{group}/{version}" if group else version
        return ListTarget(gv, source.resource or "", served[version])

    def group_version_failed(self, source: Source) -> str | None:
        group = "" if source.api_group in (None, "core") else source.api_group
        for gv, why in self.failed.items():
            if gv.rpartition("/")[0] == group:
                return why
        return None


def discover(client: KubeClient, *, concurrency: int = 4) -> Discovery:
    """GET /api, /apis and every group version's resource list (concurrently).

    A failing /api or /apis raises; a failing group version (typically an aggregated API whose
    backend is down) is recorded in `failed` and the rest of discovery stands.
    """
    core = client.get_json("/api")
    groups = client.get_json("/apis")
    disc = Discovery()
    gvs: list[str] = list(core.get("versions") or [])
    if gvs:
        disc.preferred[""] = gvs[0]
    for g in groups.get("groups") or ():
        name = g.get("name", "")
        pref = (g.get("preferredVersion") or {}).get("version")
        if pref:
            disc.preferred[name] = pref
        gvs.extend(v["groupVersion"] for v in g.get("versions") or () if v.get("groupVersion"))

    def fetch(gv: str) -> dict[str, Any] | KubeError:
        path = f"/api/{gv}" if "/" not in gv else f"/apis/{gv}"
        try:
            doc = client.get_json(path)
        except KubeError as exc:
            return exc
        doc.setdefault("groupVersion", gv)
        return doc

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="kq-discovery") as pool:
        for gv, result in zip(gvs, pool.map(fetch, gvs), strict=True):
            if isinstance(result, KubeError):
                disc.failed[gv] = str(result)
            else:
                disc.resource_lists.append(result)
    return disc
