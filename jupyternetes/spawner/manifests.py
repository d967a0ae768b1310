"""The objects a spawn creates: the instance and its `<instance>-hub` token Secret (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.crd.labels import (
    HUB_SERVER_ANNOTATION,
    HUB_USER_ANNOTATION,
    LABEL_ACCOUNT,
    MANAGED_BY,
    VARIABLES_FROM,
)
from jupyternetes.crd.naming import label_value

# Set on the hub's instances: the shared watch selects on it, and admins can list them.
SPAWNER_LABEL = ("jupyternetes.kadense.io/spawner", "jupyterhub")
USER_LABEL = "hub.jupyter.org/username"
SERVER_LABEL = "hub.jupyter.org/servername"
USER_ANNOTATION = HUB_USER_ANNOTATION
SERVER_ANNOTATION = HUB_SERVER_ANNOTATION
SPAWNER_SELECTOR = f"{SPAWNER_LABEL[0]}={SPAWNER_LABEL[1]}"


def secret_name(instance_name: str) -> str:
    return f"{instance_name}-hub"


def instance_body(name: str, namespace: str, template_name: str, template_namespace: str | None,
                  variables: Mapping[str, str], user_name: str, server_name: str,
                  account: str | None = None) -> dict:
    """`account` (spawner.accounts.account_id) goes on as the account label, which the
    operator copies onto every object and checks before it adopts a claim."""
    template: dict[str, str] = {"name": template_name}
    if template_namespace:
        template["namespace"] = template_namespace
    labels = {SPAWNER_LABEL[0]: SPAWNER_LABEL[1], USER_LABEL: label_value(user_name),
              SERVER_LABEL: label_value(server_name)}
    if account:
        labels[LABEL_ACCOUNT] = account
    return {
        "apiVersion": API_VERSION,
        "kind": INSTANCE_KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            # Labels are shortened for long or odd names; annotations keep the real ones.
            "annotations": {USER_ANNOTATION: user_name, SERVER_ANNOTATION: server_name},
        },
        "spec": {
            "template": template,
            "variables": dict(variables),
            "variablesFrom": [{"secretRef": {"name": secret_name(name)}}],
        },
    }


def secret_body(instance_name: str, namespace: str, data: Mapping[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(instance_name),
            "namespace": namespace,
            # Meant for this instance's spec.variablesFrom only (policy/trust.py, rule 3).
            "labels": {MANAGED_BY[0]: MANAGED_BY[1], SPAWNER_LABEL[0]: SPAWNER_LABEL[1],
                       VARIABLES_FROM: label_value(instance_name)},
        },
        "stringData": dict(data),
    }


def owner_patch(instance_name: str, instance_uid: str) -> dict:
    """Merge patch making the instance the Secret's owner: deleting the instance deletes it."""
    return {"metadata": {"ownerReferences": [{
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND, "name": instance_name,
        "uid": instance_uid, "blockOwnerDeletion": False, "controller": False}]}}
