"""End to end: after a failed rollout the status does not claim the template is applied, and
the failed update shows its own figures, not the previous success's."""

from __future__ import annotations

import pytest

from tests.e2e import test_operator as base
from tests.e2e.test_operator import condition, own_template, provisioned, wait_for

pytestmark = pytest.mark.e2e

hub, volumes, start_operator = base.hub, base.volumes, base.start_operator


def test_a_failed_rollout_is_not_template_current(hub, namespace, volumes, start_operator):
    ns, name = namespace, "truth"
    volumes.provide(ns, name)
    op = start_operator([ns], extra=("--resync-seconds", "3600",
                                     "--template-rollout", "immediate"))
    with own_template(hub, ns, "truth") as template:
        hub.create_instance(ns, name, template=template)
        inst = wait_for("Completed", provisioned(hub, ns, name),
                        describe=lambda: hub.describe(ns, name) + op.log_tail())
        assert condition(inst, "TemplateCurrent")["status"] == "True"
        before = inst["status"]["stack"]["lastUpdate"]
        assert before["changeSummary"].get("create", 0) >= 2

        def rename(tpl: dict) -> None:
            # The apiserver rejects this container name: the rollout's `up` fails.
            tpl["spec"]["pods"][0]["spec"]["containers"][0]["name"] = "Not_A_Valid_Name"
        gen = hub.edit_template(base.HUB_NAMESPACE, template, rename)["metadata"]["generation"]

        def failed() -> dict | None:
            i = hub.instance(ns, name)
            update = (((i or {}).get("status") or {}).get("stack") or {}).get("lastUpdate") or {}
            return i if update.get("result") == "failed" else None
        inst = wait_for("the rollout failed", failed,
                        describe=lambda: hub.describe(ns, name) + op.log_tail())
        cond = condition(inst, "TemplateCurrent")
        assert cond["status"] == "False", hub.describe(ns, name)
        assert cond["reason"] == "UpdateFailed"
        assert f"{template} (generation {gen})" in cond["message"]
        update = inst["status"]["stack"]["lastUpdate"]
        assert update["changeSummary"] != before["changeSummary"], update
        assert update["startedAt"] != before["startedAt"]
        assert "Not_A_Valid_Name" in update["message"]
        assert inst["status"]["stack"]["templateGeneration"] < gen
