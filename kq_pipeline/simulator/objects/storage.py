"""Storage: storage classes, CSI drivers and nodes, persistent volumes and claims, volume attachments.

Each stateful-set pod's claim is Bound to a CSI volume attached to the pod's node; a handful of
hand-made volumes cover the other sources (local, nfs, hostPath, in-tree EBS) and phases.
"""

from __future__ import annotations

from kq_pipeline.simulator.objects.ctx import NOW, Ctx, Obj, owner_ref, ts

EBS = "ebs.csi.aws.com"
STORAGE = "storage.k8s.io/v1"
MIGRATED_PLUGINS = "kubernetes.io/aws-ebs,kubernetes.io/cinder"


def storage_classes(ctx: Ctx) -> None:
    zones = {"key": "topology.ebs.csi.aws.com/zone", "values": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]}
    items: list[tuple[str, Obj, dict[str, str] | None]] = [
        (
            "efs-sc",
            {
                "provisioner": "efs.csi.aws.com",
                "parameters": {
                    "provisioningMode": "efs-ap",
                    "fileSystemId": "fs-0123",
                    "directoryPerms": "700",
                },
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
            },
            None,
        ),
        (
            "gp2",
            {
                "provisioner": "kubernetes.io/aws-ebs",
                "parameters": {"fsType": "ext4", "type": "gp2"},
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            },
            None,
        ),
        (
            "gp3",
            {
                "provisioner": EBS,
                "parameters": {"type": "gp3", "encrypted": "true"},
                "reclaimPolicy": "Delete",
                "mountOptions": ["debug"],
                "allowVolumeExpansion": True,
                "volumeBindingMode": "WaitForFirstConsumer",
                "allowedTopologies": [{"matchLabelExpressions": [zones]}],
            },
            {"storageclass.kubernetes.io/is-default-class": "true"},
        ),
        (
            "local-storage",
            {
                "provisioner": "kubernetes.io/no-provisioner",
                "reclaimPolicy": "Retain",
                "volumeBindingMode": "WaitForFirstConsumer",
            },
            None,
        ),
    ]
    for name, body, ann in items:
        ctx.add(
            "storage.k8s.io/v1/storageclasses",
            {
                "apiVersion": STORAGE,
                "kind": "StorageClass",
                "metadata": ctx.meta(name, annotations=ann),
                **body,
            },
        )


def csi_drivers(ctx: Ctx) -> None:
    items = [
        (
            EBS,
            {
                "attachRequired": True,
                "podInfoOnMount": False,
                "volumeLifecycleModes": ["Persistent"],
                "storageCapacity": False,
                "fsGroupPolicy": "ReadWriteOnceWithFSType",
                "requiresRepublish": False,
                "seLinuxMount": False,
            },
        ),
        (
            "efs.csi.aws.com",
            {
                "attachRequired": False,
                "podInfoOnMount": False,
                "volumeLifecycleModes": ["Persistent"],
                "fsGroupPolicy": "ReadWriteOnceWithFSType",
                "storageCapacity": False,
                "requiresRepublish": False,
            },
        ),
        (
            "secrets-store.csi.k8s.io",
            {
                "attachRequired": False,
                "podInfoOnMount": True,
                "volumeLifecycleModes": ["Ephemeral"],
                "storageCapacity": False,
                "fsGroupPolicy": "ReadWriteOnceWithFSType",
                "requiresRepublish": True,
                "tokenRequests": [
                    {"audience": "sts.amazonaws.com", "expirationSeconds": 3600},
                    {"audience": ""},
                ],
            },
        ),
    ]
    for name, spec in items:
        ctx.add(
            "storage.k8s.io/v1/csidrivers",
            {
                "apiVersion": STORAGE,
                "kind": "CSIDriver",
                "metadata": ctx.meta(name, labels={"app.kubernetes.io/name": name}),
                "spec": spec,
            },
        )


def csi_nodes(ctx: Ctx, nodes: list[Obj]) -> None:
    for i, node in enumerate(nodes):
        ctx.add("storage.k8s.io/v1/csinodes", csi_node(ctx, node, control=i == 0))


def csi_node(ctx: Ctx, node: Obj, *, control: bool, created: int | None = None) -> Obj:
    """The CSINode the kubelet registers for `node` (no drivers on the control plane)."""
    name = node["metadata"]["name"]
    instance = node["spec"]["providerID"].rsplit("/", 1)[1]
    drivers: list[Obj] | None = (
        None
        if control
        else [
            {
                "name": EBS,
                "nodeID": instance,
                "topologyKeys": ["topology.ebs.csi.aws.com/zone"],
                "allocatable": {"count": 25},
            },
            {"name": "efs.csi.aws.com", "nodeID": instance, "topologyKeys": None},
        ]
    )
    return {
        "apiVersion": STORAGE,
        "kind": "CSINode",
        "metadata": ctx.meta(
            name,
            created=created,
            owner=owner_ref(node, controller=False),
            annotations={"storage.alpha.kubernetes.io/migrated-plugins": MIGRATED_PLUGINS},
        ),
        "spec": {"drivers": drivers},
    }


def _claim(ctx: Ctx, ns: str, name: str, size: str, sc: str, volume: str | None) -> Obj:
    md = ctx.meta(
        name,
        ns,
        finalizers=["kubernetes.io/pvc-protection"],
        labels={"app.kubernetes.io/name": name},
        annotations={
            "pv.kubernetes.io/bind-completed": "yes",
            "volume.kubernetes.io/storage-provisioner": EBS,
        }
        if volume
        else None,
    )
    spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
        "storageClassName": sc,
        "volumeMode": "Filesystem",
    }
    if volume:
        spec["volumeName"] = volume
        status: Obj = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": size}}
    else:
        status = {"phase": "Pending"}
    return ctx.add(
        "v1/persistentvolumeclaims",
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md, "spec": spec, "status": status},
    )


def _volume(
    ctx: Ctx,
    name: str,
    size: str,
    source: Obj,
    *,
    claim: Obj | None,
    sc: str = "gp3",
    phase: str = "Bound",
    reclaim: str = "Delete",
    node_affinity: Obj | None = None,
) -> Obj:
    spec: Obj = {"capacity": {"storage": size}, **source, "accessModes": ["ReadWriteOnce"]}
    if claim is not None:
        cmd = claim["metadata"]
        spec["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "namespace": cmd["namespace"],
            "name": cmd["name"],
            "uid": cmd["uid"],
            "apiVersion": "v1",
            "resourceVersion": cmd["resourceVersion"],
        }
    spec["persistentVolumeReclaimPolicy"] = reclaim
    spec["storageClassName"] = sc
    spec["volumeMode"] = "Filesystem"
    if node_affinity is not None:
        spec["nodeAffinity"] = node_affinity
    status: Obj = {"phase": phase}
    if phase == "Released":
        status["lastPhaseTransitionTime"] = ts(NOW - 7200)
    if phase == "Failed":
        status |= {"message": "Error deleting EBS volume: VolumeInUse", "reason": "VolumeFailedDelete"}
    return ctx.add(
        "v1/persistentvolumes",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": ctx.meta(
                name,
                finalizers=["kubernetes.io/pv-protection"],
                annotations={"pv.kubernetes.io/provisioned-by": EBS},
            ),
            "spec": spec,
            "status": status,
        },
    )


def _zone_affinity(key: str, value: str) -> Obj:
    return {
        "required": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]
        }
    }


def volumes(ctx: Ctx, nodes: list[Obj], app_namespaces: list[str]) -> None:
    zone_of = {n["metadata"]["name"]: n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes}
    attachments: list[tuple[str, str]] = []
    for ns, claim_name, node, size in ctx.claims:
        pv_name = f"pvc-{ctx.uid()}"
        claim = _claim(ctx, ns, claim_name, size, "gp3", pv_name)
        zone = zone_of.get(node or "", "eu-west-1a")
        _volume(
            ctx,
            pv_name,
            size,
            {
                "csi": {
                    "driver": EBS,
                    "volumeHandle": f"vol-{ctx.hexstr(17)}",
                    "fsType": "ext4",
                    "volumeAttributes": {"storage.kubernetes.io/csiProvisionerIdentity": "1700-ebs"},
                }
            },
            claim=claim,
            node_affinity=_zone_affinity("topology.ebs.csi.aws.com/zone", zone),
        )
        if node:
            attachments.append((pv_name, node))
    zoo_claim = _claim(ctx, "default", "zoo-claim-default", "5Gi", "efs-sc", "pv-nfs-zoo")
    _volume(
        ctx,
        "pv-nfs-zoo",
        "5Gi",
        {"nfs": {"server": "10.0.9.9", "path": "/exports/zoo", "readOnly": False}},
        claim=zoo_claim,
        sc="efs-sc",
        reclaim="Retain",
    )
    _claim(ctx, app_namespaces[0], "pending-claim", "1Gi", "gp3", None)
    first = nodes[-1]["metadata"]["name"]
    _volume(
        ctx,
        "pv-local-0",
        "100Gi",
        {"local": {"path": "/mnt/disks/ssd0"}},
        claim=None,
        sc="local-storage",
        phase="Available",
        reclaim="Retain",
        node_affinity=_zone_affinity("kubernetes.io/hostname", first),
    )
    _volume(
        ctx,
        "pv-hostpath-logs",
        "10Gi",
        {"hostPath": {"path": "/var/log/archive", "type": "DirectoryOrCreate"}},
        claim=None,
        sc="",
        phase="Released",
        reclaim="Retain",
    )
    _volume(
        ctx,
        "pv-legacy-ebs",
        "50Gi",
        {"awsElasticBlockStore": {"volumeID": "aws://eu-west-1a/vol-0legacy", "fsType": "ext4"}},
        claim=None,
        sc="gp2",
        phase="Failed",
    )
    for i, (pv, node) in enumerate(attachments):
        status: Obj = {"attached": True, "attachmentMetadata": {"devicePath": f"/dev/xvd{chr(97 + i % 26)}a"}}
        if i == 1:
            status = {
                "attached": False,
                "attachError": {
                    "time": ts(NOW - 600),
                    "message": "rpc error: code = Internal desc = Could not attach volume",
                },
            }
        elif i == 2:
            status["detachError"] = {"time": ts(NOW - 300), "message": "volume is still mounted"}
        ctx.add(
            "storage.k8s.io/v1/volumeattachments",
            {
                "apiVersion": STORAGE,
                "kind": "VolumeAttachment",
                "metadata": ctx.meta(
                    f"csi-{ctx.hexstr(64)}",
                    annotations={"csi.alpha.kubernetes.io/node-id": node.split(".")[0]},
                    finalizers=["external-attacher/ebs-csi-aws-com"],
                ),
                "spec": {"attacher": EBS, "source": {"persistentVolumeName": pv}, "nodeName": node},
                "status": status,
            },
        )
    if not attachments:  # at least one attachment, even in clusters without stateful sets
        ctx.add(
            "storage.k8s.io/v1/volumeattachments",
            {
                "apiVersion": STORAGE,
                "kind": "VolumeAttachment",
                "metadata": ctx.meta(f"csi-{ctx.hexstr(64)}"),
                "spec": {
                    "attacher": EBS,
                    "source": {"persistentVolumeName": "pv-legacy-ebs"},
                    "nodeName": first,
                },
                "status": {"attached": False},
            },
        )
