"""Simulated target clusters for the registration and RBAC tests."""

from __future__ import annotations

from typing import Any

from kq_pipeline.simulator.objects import ClusterSpec, generate_objects

RBAC_V1 = "rbac.authorization.k8s.io/v1"


def fresh_target(
    name: str,
    *,
    pods: int = 20,
    minor: int = 24,
    hardened: bool = True,
    operators: tuple[str, ...] = (),
    custom_objects: int | None = None,
) -> dict[str, Any]:
    """A target nobody registered yet (the generator's own `kq-reader` role and binding removed).

    minor 24 serves every kind kubequery reads, PodSecurityPolicy included. `hardened` also removes
    the default `system:discovery` binding, so discovery is only what our ClusterRole grants.
    `operators` install their CRDs and `custom_objects` objects (see ClusterSpec).
    """
    objects = generate_objects(
        ClusterSpec(name, pods=pods, k8s_minor=minor, operators=operators, custom_objects=custom_objects)
    )
    drop = {"kq-reader"} | ({"system:discovery"} if hardened else set())
    for key in (f"{RBAC_V1}/clusterroles", f"{RBAC_V1}/clusterrolebindings"):
        objects[key] = [o for o in objects[key] if o["metadata"]["name"] not in drop]
    return objects
