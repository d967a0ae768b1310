"""A merge patch that replaces, so a failed update never shows the previous success's figures."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jupyternetes.controller.status import replacing
from tests.unit.test_reconcile_unit import merge_patch


def test_a_failed_update_replaces_the_previous_change_summary_and_times():
    old = {"result": "succeeded", "startedAt": "t1", "finishedAt": "t2",
           "changeSummary": {"create": 2, "same": 1}, "message": ""}
    new = {"result": "failed", "changeSummary": {}, "message": "boom"}
    assert merge_patch(old, replacing(old, new)) == new


values = st.recursive(st.integers() | st.text(max_size=3),
                      lambda inner: st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
                      max_leaves=8)
objects = st.dictionaries(st.sampled_from("abcd"), values, max_size=4)


@given(objects, objects)
def test_applying_the_patch_gives_exactly_the_new_value(old, new):
    # Empty nested objects are how merge patch leaves a replaced object; compare without them.
    assert merge_patch(old, replacing(old, new)) == merge_patch({}, new)


def test_no_previous_value_is_the_new_value():
    assert replacing(None, {"a": 1}) == {"a": 1}
