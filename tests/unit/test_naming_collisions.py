"""Which instance names can share an object name (the ownership check catches the rest)."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from jupyternetes.crd.naming import instance_name_for_user, object_name

entries = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?\Z")
hub_names = st.builds(instance_name_for_user, st.text(min_size=1, max_size=20),
                      st.sampled_from(["", "gpu", "two-words"]))


@given(hub_names, entries, hub_names, entries)
def test_hub_made_instances_never_share_an_object_name(a, entry_a, b, entry_b):
    # uuid hex has no '-': the first '-' of `<instance>-<entry>` ends the instance name, so the
    # name determines both parts.
    assume((a, entry_a) != (b, entry_b))
    assert object_name(a, entry_a) != object_name(b, entry_b)


def test_hand_made_names_with_a_dash_can_collide():
    # Why the operator checks ownership before it creates or adopts anything.
    assert object_name("alice", "data-home") == object_name("alice-data", "home")
