"""A Kubernetes API server simulator: fleets of clusters over TLS for tests, demos and benchmarks.

Faithful where clients look: discovery, `<Kind>List` paging with consistent continue tokens, 410/429/
401/403 `Status` bodies, bearer-token and client-certificate auth, and on-demand faults. Clusters given
operators (`ClusterSpec.operators`) also serve CustomResourceDefinitions and their custom objects
(objects/custom.py); `SimulatedCluster.remove_crd` deletes one at runtime. Clusters change like live
ones on demand or on a timer (`SimulatedCluster.churn`, churn.py), and any namespaced object can be
deleted (`kubectl delete`).
"""

from kq_pipeline.simulator.cluster import SimulatedCluster
from kq_pipeline.simulator.faults import FaultController
from kq_pipeline.simulator.fleet import Fleet, serve_fleet
from kq_pipeline.simulator.process import FleetProcess, serve_fleet_process

__all__ = [
    "FaultController",
    "Fleet",
    "FleetProcess",
    "SimulatedCluster",
    "serve_fleet",
    "serve_fleet_process",
]
