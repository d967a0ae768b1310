"""Instance + pod state -> what the spawner tells the hub (pure).

`start_decision`: still waiting, ready at a URL, or failed with the instance's own message.
`poll_decision`: None while starting/running, an exit status once the server is gone.
Inputs are the API's JSON (instance dict, pod dicts), as the shared watch cache holds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyternetes.crd import conditions as reasons
from jupyternetes.crd import podstatus

WAITING, READY, FAILED = "waiting", "ready", "failed"

# Provisioned=False reasons that no amount of waiting fixes: the admin or user must act.
FATAL_PROVISION_REASONS = frozenset({
    "TemplateNotFound", "InvalidTemplate", "RenderFailed", "InvalidInstance",
    # spec.variablesFrom (jupyternetes/secretvars.py). SecretMissing is not here: the spawner
    # creates the Secret just before the instance, and the operator retries it.
    "DuplicateVariable", "SecretInvalid",
    # Preflight refusals (controller/preflight.py): a claim or object with the instance's name
    # that is not its own (another instance's, another account's, released, made by hand), or
    # a read the operator's RBAC forbids. Only an admin ends them.
    reasons.OWNERSHIP_CONFLICT, reasons.PREFLIGHT_FORBIDDEN, reasons.PVC_CHANGE_REFUSED,
    # The trust model (policy/trust.py): the template does not allow the users' namespace, a
    # kind the operator may not make, a Secret not meant for variablesFrom.
    "TemplateNotAllowed", "KindNotAllowed", "SecretNotAllowed",
})
# Container waiting reasons that mean the pod will not come up by itself.
FATAL_POD_REASONS = ("ImagePullBackOff", "CrashLoopBackOff", "InvalidImageName",
                     "ErrImageNeverPull", "CreateContainerConfigError")
# An `up` that failed because the apiserver refused an object (bad spec, admission, quota, RBAC)
# fails the same way on every retry; other failures (timeouts, conflicts) are retried.
REJECTED_MARKERS = ("is invalid", "is forbidden", "forbidden:", "admission webhook", "denied the "
                    "request", "exceeded quota", "unprocessable", "422", "BadRequest")

# poll() exit statuses: anything non-None means "not running"; distinct values help the logs.
EXIT_GONE, EXIT_POD_FAILED, EXIT_POD_SUCCEEDED, EXIT_DEGRADED, EXIT_DELETING = 1, 2, 0, 3, 4
EXIT_POD_REPLACED = 5


@dataclass(frozen=True)
class Decision:
    state: str  # WAITING, READY or FAILED
    message: str = ""
    url: str | None = None
    reason: str = ""


def conditions_of(instance: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in (instance.get("status") or {}).get("conditions") or []}


def is_current(instance: Mapping[str, Any], cond: Mapping[str, Any]) -> bool:
    """A condition about the instance's current spec (not left from an earlier generation)."""
    generation = (instance.get("metadata") or {}).get("generation")
    observed = cond.get("observedGeneration")
    return generation is None or observed is None or observed == generation


def server_pod_entry(status: Mapping[str, Any], entry: str = "") -> tuple[str, Mapping] | None:
    """(entry, status.pods[entry]) of the notebook pod: `entry` if given, else the first pod
    entry with an address (the seed has exactly one pod, `notebook`)."""
    pods = status.get("pods") or {}
    if entry:
        return (entry, pods[entry]) if entry in pods else None
    for name, pod in pods.items():
        if pod.get("podAddress"):
            return name, pod
    return next(iter(pods.items()), None)


def server_url(status: Mapping[str, Any], entry: str = "") -> str | None:
    """`http://<podAddress>:<portNumber>` of the notebook pod, None until both are known."""
    found = server_pod_entry(status, entry)
    if not found:
        return None
    pod = found[1]
    address, port = pod.get("podAddress"), pod.get("portNumber")
    if not address or not isinstance(port, int):
        return None
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def pod_failure(pods: Sequence[Mapping[str, Any]],
                status_pods: Mapping[str, Mapping[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) when a pod failed or is stuck in a state it will not leave by itself.
    Live pods (the watch cache) are checked first: they are ahead of the operator's mirror."""
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name")
        phase = (pod.get("status") or {}).get("phase")
        reason, message = podstatus.problem(pod)
        if phase == "Failed":
            return reason or "PodFailed", f"pod {name} failed: {message or reason or phase}"
        if reason and reason.startswith(FATAL_POD_REASONS):
            return reason, f"pod {name}: {reason}: {message or 'no message'}"
    for entry, pod in status_pods.items():
        reason = pod.get("reason") or ""
        name = pod.get("resourceName") or entry
        if pod.get("phase") == "Failed" or pod.get("state") == "Failed":
            return reason or "PodFailed", (f"pod {name} failed: "
                                           f"{pod.get('errorMessage') or reason or 'Failed'}")
        if reason.startswith(FATAL_POD_REASONS):
            return reason, f"pod {name}: {reason}: {pod.get('errorMessage') or 'no message'}"
    return None


def start_decision(instance: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = (),
                   entry: str = "") -> Decision:
    """Where a spawn stands. Failed as soon as the status says so: never wait for a timeout."""
    if instance is None:
        return Decision(WAITING, "waiting for the instance to appear")
    meta = instance.get("metadata") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    if meta.get("deletionTimestamp"):
        return Decision(FAILED, f"instance {ref} is being deleted", reason="Deleting")
    status = instance.get("status") or {}
    conds = conditions_of(instance)
    provisioned = conds.get("Provisioned")
    degraded = conds.get("Degraded")
    ready = conds.get("Ready")
    if degraded and degraded.get("status") == "True" and is_current(instance, degraded):
        return Decision(FAILED, f"instance {ref}: {degraded.get('message')}",
                        reason=degraded.get("reason") or "Degraded")
    if provisioned and provisioned.get("status") == "False" and is_current(instance, provisioned):
        reason = provisioned.get("reason") or ""
        message = provisioned.get("message") or ""
        if reason in FATAL_PROVISION_REASONS or (
                reason == "UpFailed" and any(m in message for m in REJECTED_MARKERS)):
            return Decision(FAILED, f"instance {ref}: {message}", reason=reason)
    failure = pod_failure(pods, status.get("pods") or {})
    if failure:
        return Decision(FAILED, f"instance {ref}: {failure[1]}", reason=failure[0])
    if (ready and ready.get("status") == "True" and is_current(instance, ready)
            and provisioned and provisioned.get("status") == "True"):
        url = server_url(status, entry)
        if url:
            return Decision(READY, f"instance {ref} is ready", url=url)
        return Decision(WAITING, f"instance {ref} is ready but has no pod address yet")
    if ready and ready.get("message"):
        return Decision(WAITING, ready["message"])
    return Decision(WAITING, f"waiting for instance {ref}")


def poll_decision(instance: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = (),
                  ) -> int | None:
    """None while the server runs or starts; an exit status once it is gone or cannot serve."""
    if instance is None:
        return EXIT_GONE
    if (instance.get("metadata") or {}).get("deletionTimestamp"):
        return EXIT_DELETING
    degraded = conditions_of(instance).get("Degraded")
    if degraded and degraded.get("status") == "True" and is_current(instance, degraded):
        return EXIT_DEGRADED
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue  # being replaced; the operator brings up the next one
        if phase == "Failed":
            return EXIT_POD_FAILED
        if phase == "Succeeded":
            return EXIT_POD_SUCCEEDED
    for pod in ((instance.get("status") or {}).get("pods") or {}).values():
        if pod.get("phase") == "Failed":
            return EXIT_POD_FAILED
        if pod.get("phase") == "Succeeded":
            return EXIT_POD_SUCCEEDED
    return None


def routed_pod_gone(instance: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
                    routed_ip: str | None, entry: str = "") -> bool:
    """Whether the pod at `routed_ip`, the address the hub's proxy sends the user to
    (`spawner.server.ip`, from the URL `start` returned), is gone: deleted or replaced (evicted,
    deleted by hand, a template rolled out with `immediate`), so the route points at a dead
    address. The server is then stopped, as KubeSpawner's poll says when its pod is gone: the
    hub removes the route and the user starts again (the PVC is kept). Re-pointing the route
    instead needs the hub's proxy object, which the Spawner API does not give; the hub's own
    route check would fix it only after `last_activity_interval` (5 minutes).

    Gone only when both views agree: no live pod of the instance (the hub's pod cache) has
    that address, and the instance's status (the operator's view) no longer names it. Either
    alone could lag right after a start. A replacement that got the same address serves the
    route: not gone. No address known (None, empty): not decided here."""
    if not routed_ip:
        return False
    found = server_pod_entry(instance.get("status") or {}, entry)
    if found and found[1].get("podAddress") == routed_ip:
        return False
    return not any(
        not (pod.get("metadata") or {}).get("deletionTimestamp")
        and (pod.get("status") or {}).get("podIP") == routed_ip
        for pod in pods)


def operator_answered(instance: Mapping[str, Any]) -> bool:
    """Whether any operator has acted on the instance: its finalizer (the operator's first
    write) or any status."""
    return bool((instance.get("metadata") or {}).get("finalizers") or instance.get("status"))


def timeout_message(instance: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]],
                    ref: str, waited: float, entry: str = "") -> str:
    """Why a spawn is given up after `waited` seconds (the hub's start_timeout), for the user
    and the admin: what exists, who did not answer, what to check. `ref` is namespace/name."""
    name = ref.rsplit("/", 1)[-1]
    describe = f"`kubectl describe jni {name} -n {ref.split('/', 1)[0]}`"
    if instance is None:
        return (f"instance {ref} was not there after {waited:.0f}s (deleted by someone else?); "
                f"see the hub's log")
    if (instance.get("metadata") or {}).get("deletionTimestamp"):
        return (f"instance {ref} is still being deleted after {waited:.0f}s (a previous server "
                f"of the same name): no operator finished its deletion; check that the "
                f"jupyternetes operator is running and watches this namespace, then {describe}")
    if not operator_answered(instance):
        return (f"instance {ref} was created, but no operator answered in {waited:.0f}s (no "
                f"finalizer, no status): check that the jupyternetes operator is running and "
                f"watches this namespace (its Deployment's pods and logs), then {describe}")
    return (f"instance {ref} not ready after {waited:.0f}s: "
            f"{start_decision(instance, pods, entry).message}; see {describe}")
