"""events.k8s.io/v1 Events about pods and deployments.

Events recorded through the old core/v1 API come back from events.k8s.io/v1 with a null
eventTime and the deprecated* fields set; kubequery then stamps the current time. Both kinds occur.
"""

from __future__ import annotations

from kq_pipeline.simulator.objects.ctx import NOW, Ctx, Obj, micro_ts, ts

REASONS = (
    ("Normal", "Scheduled", "Binding", "default-scheduler", "Successfully assigned {ns}/{name} to {node}"),
    ("Normal", "Pulled", "Pulling", "kubelet", 'Container image "{image}" already present on machine'),
    ("Normal", "Started", "Started", "kubelet", "Started container app"),
    ("Warning", "BackOff", "Restarting", "kubelet", "Back-off restarting failed container app in pod {name}"),
    (
        "Warning",
        "Unhealthy",
        "Probing",
        "kubelet",
        "Readiness probe failed: HTTP probe failed with statuscode: 503",
    ),
)


def events(ctx: Ctx) -> None:
    rng = ctx.rng
    pods = ctx.out.get("v1/pods", [])
    if not pods:
        return
    count = max(3, len(pods) * ctx.spec.events_per_100_pods // 100)
    step = max(1, len(pods) // count)
    for i, p in enumerate(pods[::step][:count]):
        md = p["metadata"]
        node = p["spec"].get("nodeName", "")
        etype, reason, action, controller, note = REASONS[i % len(REASONS)]
        at = NOW - rng.randrange(10, 3600)
        name = f"{md['name']}.{ctx.hexstr(16)}"
        ev: Obj = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": ctx.meta(name, md["namespace"], created=at),
        }
        modern = i % 3 != 0
        ev["eventTime"] = micro_ts(at, rng.randrange(1_000_000)) if modern else None
        if modern:
            ev["reportingController"] = f"{controller}" if controller != "kubelet" else "kubelet"
            ev["reportingInstance"] = f"{controller}-{node.split('.')[0]}" if node else controller
        else:
            ev["reportingController"] = ""
            ev["reportingInstance"] = ""
            ev["deprecatedSource"] = (
                {"component": controller, "host": node} if node else {"component": controller}
            )
            ev["deprecatedFirstTimestamp"] = ts(at - 600)
            ev["deprecatedLastTimestamp"] = ts(at)
            ev["deprecatedCount"] = rng.randrange(1, 20)
        ev["action"] = action
        ev["reason"] = reason
        ev["regarding"] = {
            "kind": "Pod",
            "namespace": md["namespace"],
            "name": md["name"],
            "uid": md["uid"],
            "apiVersion": "v1",
            "resourceVersion": md["resourceVersion"],
        }
        if reason != "Scheduled":
            ev["regarding"]["fieldPath"] = "spec.containers{app}"
        if md.get("ownerReferences") and i % 4 == 1:
            o = md["ownerReferences"][0]
            ev["related"] = {
                "kind": o["kind"],
                "namespace": md["namespace"],
                "name": o["name"],
                "uid": o["uid"],
                "apiVersion": o["apiVersion"],
            }
        image = p["spec"]["containers"][0]["image"]
        ev["note"] = note.format(ns=md["namespace"], name=md["name"], node=node, image=image)
        ev["type"] = etype
        if etype == "Warning" and modern:
            ev["series"] = {
                "count": rng.randrange(2, 50),
                "lastObservedTime": micro_ts(at + rng.randrange(1, 9), 0),
            }
        ctx.add("events.k8s.io/v1/events", ev)
