"""Whose data a claim is: the account id, the claims delete_forever may touch, the release."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from jupyternetes.crd.labels import (
    ADOPT_ANNOTATION,
    LABEL_ACCOUNT,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    RELEASED_FROM,
)
from jupyternetes.crd.naming import is_label_value
from jupyternetes.spawner import accounts, manifests

CREATED = datetime(2026, 12, 7, 3, 20, 1, 123456)


def test_the_account_id_is_stable_for_the_account_and_new_for_a_namesake():
    first = accounts.account_id("jsmith", CREATED)
    assert first and is_label_value(first)
    # The same account after a hub restart (a database that keeps whole seconds only, or the
    # same time with a time zone) is the same account.
    assert accounts.account_id("jsmith", CREATED.replace(microsecond=0)) == first
    aware = CREATED.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert accounts.account_id("jsmith", aware) == first
    # Deleted and created again, a second later or more: another account.
    assert accounts.account_id("jsmith", CREATED + timedelta(seconds=1)) != first
    assert accounts.account_id("jdoe", CREATED) != first
    assert accounts.account_id("jsmith", None) is None


def test_delete_forever_touches_only_the_accounts_own_or_unlabelled_claims():
    def claim(account: str | None) -> dict:
        labels = {LABEL_INSTANCE: "i"}
        if account:
            labels[LABEL_ACCOUNT] = account
        return {"metadata": {"labels": labels}}

    assert accounts.is_this_accounts(claim("a"), "a")
    assert accounts.is_this_accounts(claim(None), "a")  # from before accounts
    assert not accounts.is_this_accounts(claim("b"), "a")
    assert accounts.is_this_accounts(claim("b"), None)


def test_a_released_claim_has_no_owner_labels_and_says_from_whom():
    patch = accounts.release_patch("vera", "", "acc", "inst", datetime(2026, 12, 7, 4, 0,
                                                                            tzinfo=UTC))
    labels, annotations = patch["metadata"]["labels"], patch["metadata"]["annotations"]
    assert labels == {LABEL_INSTANCE: None, LABEL_INSTANCE_NAMESPACE: None, LABEL_ACCOUNT: None}
    assert annotations[ADOPT_ANNOTATION] is None  # an earlier hand-over does not carry over
    note = json.loads(annotations[RELEASED_FROM])
    assert note == {"user": "vera", "server": "", "account": "acc", "instance": "inst",
                    "releasedAt": "2026-12-07T04:00:00Z"}


def test_the_instance_carries_the_account_label():
    body = manifests.instance_body("i", "ns", "t", None, {}, "vera", "", "acc")
    assert body["metadata"]["labels"][LABEL_ACCOUNT] == "acc"
    assert LABEL_ACCOUNT not in manifests.instance_body("i", "ns", "t", None, {}, "vera",
                                                        "")["metadata"]["labels"]
