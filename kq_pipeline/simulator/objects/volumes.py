"""Pod volumes: the everyday kinds workloads use, and a zoo of every volume source kubequery knows.

kubequery's volume tables set `volume_type`, `fs_type`, `read_only` and `secret_name` per source,
so the zoo holds one volume of each of its 29 sources to exercise every branch.
"""

from __future__ import annotations

from kq_pipeline.simulator.objects.ctx import Ctx, Obj

DEFAULT_MODE = 420  # 0644, what the API server defaults defaultMode to


def kube_api_access(ctx: Ctx) -> Obj:
    """The projected service-account token volume that admission adds to every pod."""
    return {
        "name": f"kube-api-access-{ctx.suffix()}",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
            "defaultMode": DEFAULT_MODE,
        },
    }


def config_map(ctx: Ctx, ns: str, name: str, vol: str = "config") -> Obj:
    ctx.configmaps_wanted[(ns, name)] = None
    src: Obj = {"name": name, "defaultMode": DEFAULT_MODE}
    if ctx.rng.random() < 0.3:
        src["items"] = [{"key": "app.yaml", "path": "app.yaml"}]
    if ctx.rng.random() < 0.1:
        src["optional"] = True
    return {"name": vol, "configMap": src}


def secret(ctx: Ctx, ns: str, name: str, vol: str = "secrets") -> Obj:
    ctx.secrets_wanted[(ns, name)] = "Opaque"
    src: Obj = {"secretName": name, "defaultMode": ctx.rng.choice((DEFAULT_MODE, 256, 288))}
    return {"name": vol, "secret": src}


def empty_dir(ctx: Ctx, vol: str = "tmp") -> Obj:
    r = ctx.rng.random()
    if r < 0.4:
        return {"name": vol, "emptyDir": {}}
    if r < 0.8:
        return {"name": vol, "emptyDir": {"sizeLimit": ctx.rng.choice(("500Mi", "1Gi", "64M", "2147483648"))}}
    return {"name": vol, "emptyDir": {"medium": "Memory", "sizeLimit": "128Mi"}}


def host_path(path: str, vol: str, kind: str | None = None) -> Obj:
    src: Obj = {"path": path}
    if kind is not None:
        src["type"] = kind
    return {"name": vol, "hostPath": src}


def pvc(claim: str, vol: str = "data", read_only: bool = False) -> Obj:
    src: Obj = {"claimName": claim}
    if read_only:
        src["readOnly"] = True
    return {"name": vol, "persistentVolumeClaim": src}


def downward_api(vol: str = "podinfo") -> Obj:
    return {
        "name": vol,
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}},
                {
                    "path": "cpu_limit",
                    "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"},
                },
            ],
            "defaultMode": DEFAULT_MODE,
        },
    }


def projected(ctx: Ctx, ns: str, app: str, vol: str = "bundle") -> Obj:
    ctx.secrets_wanted[(ns, f"{app}-credentials")] = "Opaque"
    ctx.configmaps_wanted[(ns, f"{app}-config")] = None
    return {
        "name": vol,
        "projected": {
            "sources": [
                {
                    "secret": {
                        "name": f"{app}-credentials",
                        "items": [{"key": "password", "path": "db/password"}],
                    }
                },
                {"configMap": {"name": f"{app}-config"}},
                {
                    "serviceAccountToken": {
                        "audience": "vault",
                        "expirationSeconds": 600,
                        "path": "vault-token",
                    }
                },
            ],
            "defaultMode": DEFAULT_MODE,
        },
    }


def csi_secrets_store(vol: str = "secrets-store") -> Obj:
    return {
        "name": vol,
        "csi": {
            "driver": "secrets-store.csi.k8s.io",
            "readOnly": True,
            "volumeAttributes": {"secretProviderClass": "aws-secrets"},
        },
    }


def nfs(vol: str = "shared") -> Obj:
    return {"name": vol, "nfs": {"server": "fs-0123.efs.eu-west-1.amazonaws.com", "path": "/exports/shared"}}


def zoo(ns: str) -> list[Obj]:
    """One volume of every source kubequery distinguishes (in its `volume_type` order)."""
    secret_ref = {"name": "zoo-credentials"}
    return [
        {
            "name": "aws-ebs",
            "awsElasticBlockStore": {"volumeID": "vol-0a1b2c3d4e5f", "fsType": "ext4", "partition": 1},
        },
        {
            "name": "azure-disk",
            "azureDisk": {
                "diskName": "disk1",
                "diskURI": "/subscriptions/x/disks/disk1",
                "cachingMode": "ReadOnly",
                "fsType": "xfs",
                "readOnly": True,
                "kind": "Managed",
            },
        },
        {"name": "azure-file", "azureFile": {"secretName": "zoo-azure", "shareName": "share1"}},
        {
            "name": "csi",
            "csi": {
                "driver": "ebs.csi.aws.com",
                "fsType": "ext4",
                "readOnly": False,
                "nodePublishSecretRef": {"name": "zoo-csi"},
            },
        },
        {
            "name": "ceph-fs",
            "cephfs": {
                "monitors": ["10.16.154.78:6789"],
                "path": "/",
                "user": "admin",
                "secretRef": {"name": "zoo-ceph"},
                "readOnly": True,
            },
        },
        {
            "name": "cinder",
            "cinder": {"volumeID": "cinder-vol", "fsType": "ext4", "secretRef": {"name": "zoo-os"}},
        },
        {"name": "config-map", "configMap": {"name": "zoo-config", "defaultMode": DEFAULT_MODE}},
        downward_api("downward-api"),
        {"name": "empty-dir", "emptyDir": {}},
        {"name": "empty-dir-limited", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        {
            "name": "ephemeral",
            "ephemeral": {
                "volumeClaimTemplate": {
                    "metadata": {"labels": {"type": "scratch"}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "gp3",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            },
        },
        {
            "name": "fc",
            "fc": {"targetWWNs": ["500a0982991b8dc5"], "lun": 2, "fsType": "ext4", "readOnly": True},
        },
        {
            "name": "flex-volume",
            "flexVolume": {
                "driver": "kubernetes.io/lvm",
                "fsType": "ext4",
                "secretRef": {"name": "zoo-flex"},
                "options": {"volumeID": "vol1"},
            },
        },
        {"name": "flocker", "flocker": {"datasetName": "dataset1"}},
        {"name": "gce-pd", "gcePersistentDisk": {"pdName": "pd-1", "fsType": "ext4", "partition": 0}},
        {"name": "git-repo", "gitRepo": {"repository": "https://example.com/repo.git", "revision": "main"}},
        {
            "name": "glusterfs",
            "glusterfs": {"endpoints": "glusterfs-cluster", "path": "kube_vol", "readOnly": True},
        },
        host_path("/var/lib/zoo", "host-path", "DirectoryOrCreate"),
        {
            "name": "iscsi",
            "iscsi": {
                "targetPortal": "10.0.2.15:3260",
                "iqn": "iqn.2001-04.com.example:storage",
                "lun": 0,
                "iscsiInterface": "default",
                "fsType": "ext4",
                "chapAuthDiscovery": True,
                "secretRef": {"name": "zoo-chap"},
            },
        },
        nfs("nfs"),
        pvc(f"zoo-claim-{ns}", "pvc", read_only=True),
        {"name": "photon", "photonPersistentDisk": {"pdID": "photon-1", "fsType": "ext4"}},
        {"name": "portworx", "portworxVolume": {"volumeID": "pxvol", "fsType": "ext4"}},
        {
            "name": "projected",
            "projected": {"sources": [{"secret": secret_ref}], "defaultMode": DEFAULT_MODE},
        },
        {
            "name": "quobyte",
            "quobyte": {"registry": "registry:7861", "volume": "testVolume", "readOnly": True},
        },
        {
            "name": "rbd",
            "rbd": {
                "monitors": ["10.16.154.78:6789"],
                "image": "foo",
                "fsType": "ext4",
                "pool": "kube",
                "user": "admin",
                "keyring": "/etc/ceph/keyring",
                "secretRef": {"name": "zoo-rbd"},
            },
        },
        {
            "name": "scaleio",
            "scaleIO": {
                "gateway": "https://localhost:443/api",
                "system": "scaleio",
                "secretRef": {"name": "zoo-sio"},
                "fsType": "xfs",
                "storageMode": "ThinProvisioned",
            },
        },
        {"name": "secret", "secret": {"secretName": "zoo-credentials", "defaultMode": DEFAULT_MODE}},
        {
            "name": "storageos",
            "storageos": {"volumeName": "vol1", "fsType": "ext4", "secretRef": {"name": "zoo-storageos"}},
        },
        {"name": "vsphere", "vsphereVolume": {"volumePath": "[datastore1] volumes/myDisk", "fsType": "ext4"}},
    ]
