"""The real node's dynamic volume provisioner: PersistentVolumeClaims of the StorageClass
STORAGE_CLASS (the cluster's default) get a `local` PersistentVolume, a fresh folder under
VOLUME_DIR on this machine, made for them; a released volume of reclaim policy Delete is removed
with its folder. An external provisioner as the storage SIG describes them (the PV controller
marks the claim with `volume.kubernetes.io/storage-provisioner`, this program makes the PV with a
claimRef, the PV controller binds it), the way kind's local-path-provisioner works.

Why not kube-controller-manager's `--enable-hostpath-provisioner`: it makes `hostPath` volumes
whose folder is root's with mode 0750, and the kubelet applies no `fsGroup` to hostPath, so a
non-root pod (the operator runs as 10001, notebooks as their user's uid) could not write its own
claim. A `local` volume is what the kubelet treats like a disk: `fsGroup` ownership applies, and
the folder is made world-writable (as local-path-provisioner does) for pods without an fsGroup.

Run by harness.cluster.DevCluster with a real node: `python -m harness.provisioner KUBECONFIG`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

PROVISIONER = "harness.jupyternetes.dev/local-volume"
STORAGE_CLASS = "local-volume"
VOLUME_DIR = Path("/var/lib/jupyternetes-node/volumes")
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
POLL_SECONDS = 1.0

log = logging.getLogger("provisioner")


def storage_class() -> dict[str, Any]:
    """The cluster's default StorageClass (a cluster from kind or a cloud has one too)."""
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate"}


def volume_for(claim: dict[str, Any], node_name: str, reclaim: str) -> dict[str, Any]:
    """The PersistentVolume for a claim (pure): named after the claim's uid, pre-bound to it."""
    meta, spec = claim["metadata"], claim["spec"]
    name = f"pvc-{meta['uid']}"
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"]},
            "local": {"path": str(VOLUME_DIR / name)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{
                "key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}]}]}},
        },
    }


def wants_volume(claim: dict[str, Any]) -> bool:
    meta = claim["metadata"]
    return (not claim["spec"].get("volumeName")
            and (meta.get("annotations") or {}).get(STORAGE_PROVISIONER) == PROVISIONER
            and not meta.get("deletionTimestamp"))


def sync(core: client.CoreV1Api, api: client.ApiClient, node_name: str, reclaim: str) -> None:
    claims = api.sanitize_for_serialization(core.list_persistent_volume_claim_for_all_namespaces())
    for claim in claims["items"]:
        if not wants_volume(claim):
            continue
        pv = volume_for(claim, node_name, reclaim)
        folder = Path(pv["spec"]["local"]["path"])
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o777)  # mkdir's mode is cut by the umask
        try:
            core.create_persistent_volume(pv)
            log.info("provisioned %s for %s/%s", pv["metadata"]["name"],
                     claim["metadata"]["namespace"], claim["metadata"]["name"])
        except client.ApiException as e:
            if e.status != 409:
                raise
    for pv in core.list_persistent_volume().items:
        ours = (pv.metadata.annotations or {}).get(PROVISIONED_BY) == PROVISIONER
        if ours and pv.status.phase == "Released" \
                and pv.spec.persistent_volume_reclaim_policy == "Delete":
            shutil.rmtree(pv.spec.local.path, ignore_errors=True)
            with contextlib.suppress(client.ApiException):
                core.delete_persistent_volume(pv.metadata.name)
            log.info("deleted %s", pv.metadata.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kubeconfig")
    parser.add_argument("--node-name", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    VOLUME_DIR.mkdir(parents=True, exist_ok=True)
    api = config.new_client_from_config(config_file=args.kubeconfig)
    core, storage = client.CoreV1Api(api), client.StorageV1Api(api)
    with contextlib.suppress(client.ApiException):
        storage.create_storage_class(storage_class())
    reclaim = storage_class()["reclaimPolicy"]
    while True:
        try:
            sync(core, api, args.node_name, reclaim)
        except (client.ApiException, OSError) as e:  # the apiserver restarting, a busy disk
            log.warning("sync failed, retrying: %s", e)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    raise SystemExit(main())
