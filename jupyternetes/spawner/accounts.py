"""Whose data a claim is: the hub account, not only the user name (pure).

Instance names are `uuid5(user name)`, so a user deleted and created again under the same name
gets the same instance name and the same claim names. The name alone must therefore never hand
a claim to an account: every instance and object carries the account's id in the
`jupyternetes.kadense.io/account` label, and the operator adopts a claim only for the same
account (jupyternetes.policy.ownership).

Why the account's creation time: the hub keeps it for every user (`orm.User.created`, set once
when the account is made, never changed, in the hub's database), so it is the same for every
server of the user, after every hub restart and on every hub replica, and needs no state of the
spawner's own (spawner state is per server, dropped with a failed first spawn, and reset when a
named server is deleted). A new account of the same name is made later, so its time differs. The
hub's numeric user id is not enough: sqlite hands a deleted user's id to the next user. The time
is taken to the second (a database without sub-second DATETIME would otherwise change the id
across a hub restart) in UTC; two accounts of one name within the same second are not told apart,
which delete_forever (delete or release of the claims) still covers.

delete_forever (the user or the named server deleted for good) deletes the claims
(`delete_pvc = True`, as KubeSpawner) or releases them (`release_patch`): no instance labels and
no account any more, an annotation saying from whom and when; only an admin's adopt annotation
hands a released claim to an instance again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jupyternetes.crd.labels import (
    ADOPT_ANNOTATION,
    LABEL_ACCOUNT,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    RELEASED_FROM,
)

# The namespace of account ids (a fixed, project-owned UUID; changing it changes every id).
ACCOUNT_NAMESPACE = uuid.UUID("6f1f3c52-2a67-5d0c-9a51-6b1e0c7d4a10")


def account_id(user_name: str, created: datetime | None) -> str | None:
    """The account's id (32 hex digits, a valid label value); None without a creation time."""
    if created is None:
        return None
    if created.tzinfo is not None:
        created = created.astimezone(UTC).replace(tzinfo=None)
    stamp = created.replace(microsecond=0).isoformat()
    return uuid.uuid5(ACCOUNT_NAMESPACE, f"{user_name}\n{stamp}").hex


def is_this_accounts(pvc: Mapping[str, Any], account: str | None) -> bool:
    """A claim delete_forever may delete or release: the account's own, or one made before
    claims carried an account (it was this instance's, by its labels). A claim labelled with
    another account is left as it is: it is not this account's to decide about."""
    theirs = ((pvc.get("metadata") or {}).get("labels") or {}).get(LABEL_ACCOUNT)
    return not theirs or account is None or theirs == account


def release_patch(user_name: str, server_name: str, account: str | None, instance: str,
                  now: datetime) -> dict[str, Any]:
    """Merge patch that releases a claim: no instance or account labels (so no instance adopts
    it by its labels), no adopt annotation (an earlier hand-over does not carry over), and
    `released-from` saying from whom and when, for the admin who decides about it."""
    note = {"user": user_name, "server": server_name, "account": account or "",
            "instance": instance, "releasedAt": now.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")}
    return {"metadata": {
        "labels": {LABEL_INSTANCE: None, LABEL_INSTANCE_NAMESPACE: None, LABEL_ACCOUNT: None},
        "annotations": {ADOPT_ANNOTATION: None,
                        RELEASED_FROM: json.dumps(note, sort_keys=True)},
    }}
