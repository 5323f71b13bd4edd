"""Legacy discovery documents (/api, /apis, /api/v1, /apis/<g>/<v>) and /version, built once per cluster.

kubectl asks for aggregated discovery (apidiscovery.k8s.io/v2) first; answering with plain
`application/json` legacy documents makes client-go fall back to them, as with an older server.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from kq_pipeline.simulator.catalog import Catalog, ResourceType


def version_info(git_version: str) -> dict[str, str]:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version if git_version.startswith("v") else f"v{git_version}",
        "gitCommit": hashlib.sha1(git_version.encode()).hexdigest(),
        "gitTreeState": "clean",
        "buildDate": "2024-06-11T20:20:00Z",
        "goVersion": "go1.22.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.resource,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    main["storageVersionHash"] = rt.storage_version_hash()
    out = [main]
    for sub in rt.subresources:
        kind, verbs = rt.kind, ["get", "patch", "update"]
        if sub == "scale":
            out.append(
                {
                    "name": f"{rt.resource}/scale",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": verbs,
                }
            )
            continue
        if sub in ("log", "proxy", "attach", "exec", "portforward"):
            kind, verbs = {"log": ("Pod", ["get"])}.get(
                sub,
                (f"{rt.kind}ProxyOptions" if sub == "proxy" else f"Pod{sub.capitalize()}Options", ["get"]),
            )
        elif sub in ("binding", "eviction", "token"):
            kind = {"binding": "Binding", "eviction": "Eviction", "token": "TokenRequest"}[sub]
            verbs = ["create"]
        out.append(
            {
                "name": f"{rt.resource}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind,
                "verbs": verbs,
            }
        )
    return out


def resource_list(catalog: Catalog, group: str, version: str) -> bytes | None:
    types = sorted(catalog.resources_of(group, version), key=lambda t: t.resource)
    if not types:
        return None
    gv = f"{group}/{version}" if group else version
    resources = [e for t in types for e in _resource_entries(t)]
    return orjson.dumps(
        {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
    )


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_versions(server_address: str) -> bytes:
    return orjson.dumps(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }
    )


def api_group_list(catalog: Catalog) -> bytes:
    groups = [_group(g, vs) for g, vs in catalog.group_versions().items() if g]
    return orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})


def api_group(catalog: Catalog, name: str) -> bytes | None:
    versions = catalog.group_versions().get(name)
    if not name or not versions:
        return None
    return orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)})
