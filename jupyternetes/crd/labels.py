"""The metadata keys of the contract (pure): labels on every managed object, the finalizer, and
the annotations an admin sets on a JupyterNotebookInstance to steer the operator.

Labels on every object a stack creates: the instance, its namespace, the template, its namespace,
the entry and its group, and `app.kubernetes.io/managed-by: jupyternetes`.

Annotations:

- `jupyternetes.kadense.io/retry-now: <any new value>`: ends a failing instance's backoff wait
  once (each new value is one immediate attempt; the value itself means nothing).
- `jupyternetes.kadense.io/force-delete: "true"`: the way out of a destroy that keeps failing.
  The operator deletes the instance's pods with the plain Kubernetes client (PVCs are kept),
  removes the stack's state (or leaves it for the orphan collector when even that fails; the
  next server of the same name refreshes before its first `up`), and drops its finalizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LABEL_PREFIX = "jupyternetes.kadense.io"
LABEL_INSTANCE = f"{LABEL_PREFIX}/instance"
LABEL_INSTANCE_NAMESPACE = f"{LABEL_PREFIX}/instanceNamespace"
LABEL_TEMPLATE = f"{LABEL_PREFIX}/template"
LABEL_TEMPLATE_NAMESPACE = f"{LABEL_PREFIX}/templateNamespace"
LABEL_ENTRY = f"{LABEL_PREFIX}/entry"
LABEL_ENTRY_GROUP = f"{LABEL_PREFIX}/entryGroup"
MANAGED_BY = ("app.kubernetes.io/managed-by", "jupyternetes")
# The account an instance (and so each of its objects) belongs to: set by the spawner on the
# instance, copied by the render onto every object. Instance names repeat when a user of the
# same name comes back; accounts do not (jupyternetes.spawner.accounts), so a claim is adopted
# only by the account that made it (jupyternetes.policy.ownership).
LABEL_ACCOUNT = f"{LABEL_PREFIX}/account"
# On a claim released when its account was deleted (the spawner's delete_forever with
# delete_pvc = False): who it was released from, and when (JSON).
RELEASED_FROM = f"{LABEL_PREFIX}/released-from"
# An admin's hand-over of an object to instance <value> (jupyternetes.policy.ownership).
ADOPT_ANNOTATION = f"{LABEL_PREFIX}/adopt"
# Stacks are destroyed before an instance goes: the operator holds this finalizer until then.
FINALIZER = f"{LABEL_PREFIX}/stack"
MANAGED_SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"

# On a Secret: may spec.variablesFrom read it ("true": any instance of its namespace; an
# instance's name, as label_value gives it: that instance only). policy/trust.py has the rule.
VARIABLES_FROM = f"{LABEL_PREFIX}/variables-from"

# The hub's user and server of an instance (the spawner writes the raw names; labels are
# shortened for long names). KubeSpawner writes the same annotations on its claims.
HUB_USER_ANNOTATION = "hub.jupyter.org/username"
HUB_SERVER_ANNOTATION = "hub.jupyter.org/servername"
# On a template's pvcs entry: the claim's name (placeholders allowed, e.g.
# `claim-{jupyterhub.kubespawner.user_server}`) instead of `<instance>-<entry>`, and the opt-in
# to adopt the claim KubeSpawner made for the same hub user (policy/ownership.py).
KUBESPAWNER_CLAIM = f"{LABEL_PREFIX}/kubespawner-claim"

# On every namespace the spawner makes for a user (`enable_user_namespaces`): the operator's
# `--namespace-selector` and the deploy stack's admission policy select on it.
USER_NAMESPACE_LABEL = (f"{LABEL_PREFIX}/user-namespace", "true")
USER_NAMESPACE_SELECTOR = f"{USER_NAMESPACE_LABEL[0]}={USER_NAMESPACE_LABEL[1]}"

RETRY_NOW = f"{LABEL_PREFIX}/retry-now"
FORCE_DELETE = f"{LABEL_PREFIX}/force-delete"


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    annotations = (obj.get("metadata") or {}).get("annotations")
    return annotations if isinstance(annotations, Mapping) else {}


def retry_request(obj: Mapping[str, Any]) -> str | None:
    """The retry-now value (a change of it is a request for one immediate attempt)."""
    value = annotations_of(obj).get(RETRY_NOW)
    return value if isinstance(value, str) else None


def force_delete_requested(obj: Mapping[str, Any]) -> bool:
    value = annotations_of(obj).get(FORCE_DELETE)
    return isinstance(value, str) and value.strip().lower() == "true"
