"""Variables, token Secret data and the objects a spawn creates (pure)."""

from __future__ import annotations

import pytest
import yaml

from jupyternetes.crd.model import Instance
from jupyternetes.crd.naming import instance_name_for_user
from jupyternetes.spawner import manifests, variables
from jupyternetes.spawner.variables import SpawnFacts

SEED_INSTANCE = "examples/seed-instance.yaml"


def facts(user: str = "jovyan", server: str = "") -> SpawnFacts:
    return SpawnFacts(user_name=user, user_id=1, server_name=server,
                      oauth_client_id=f"jupyterhub-user-{user}", hub_namespace="kadense",
                      instance_name=instance_name_for_user(user, server),
                      instance_namespace="default")


ENV = {
    "JUPYTERHUB_API_TOKEN": "secret-token",
    "JPY_API_TOKEN": "secret-token",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/jovyan/",
    "JUPYTERHUB_ACTIVITY_URL": "http://hub:8081/hub/api/users/jovyan/activity",
    "JUPYTERHUB_OAUTH_SCOPES": '["access:servers!server=jovyan/"]',
}


def test_seed_variables_match_the_seed_instance_except_the_token() -> None:
    with open(SEED_INSTANCE) as f:
        seed = yaml.safe_load(f)
    built = variables.builtin_variables(facts(), ENV)
    expected = dict(seed["spec"]["variables"])
    expected.pop("jupyterhub.api_token")
    assert {k: built[k] for k in expected} == expected
    assert seed["metadata"]["name"] == built["jupyternetes.instance.name"]
    assert built["jupyterhub.server.name"] == ""


def test_env_becomes_prefixed_variables_and_tokens_stay_out() -> None:
    built = variables.builtin_variables(facts(), ENV)
    assert built["jupyterhub.env.JUPYTERHUB_SERVICE_PREFIX"] == "/user/jovyan/"
    assert built["jupyterhub.env.JUPYTERHUB_OAUTH_SCOPES"] == '["access:servers!server=jovyan/"]'
    assert "secret-token" not in built.values()
    assert not any("API_TOKEN" in k or k == "jupyterhub.api_token" for k in built)


def test_secret_data_holds_the_token_under_both_keys() -> None:
    assert variables.secret_data("t0k") == {"jupyterhub.api_token": "t0k",
                                            "JUPYTERHUB_API_TOKEN": "t0k",
                                            "jupyterhub.env.JPY_API_TOKEN": "t0k",
                                            "jupyterhub.env.JUPYTERHUB_API_TOKEN": "t0k"}
    with pytest.raises(ValueError, match="no API token"):
        variables.secret_data("")


def test_admin_layers_add_and_override_in_order() -> None:
    built = variables.builtin_variables(facts(), {})
    merged = variables.merge_variables(built, ("extra_variables", {"image": "a", "cpu": 2}),
                                       ("profile", {"image": "b", "gpu": True}))
    assert merged["image"] == "b"
    assert merged["cpu"] == "2"
    assert merged["gpu"] == "true"


def test_admin_layers_differing_in_case_replace_each_other() -> None:
    merged = variables.merge_variables({}, ("a", {"Image": "a"}), ("b", {"image": "b"}))
    assert merged == {"image": "b"}


@pytest.mark.parametrize("name", ["jupyterhub.user.name", "JUPYTERHUB.USER.NAME",
                                  "jupyterhub.api_token", "JUPYTERHUB_API_TOKEN",
                                  "jupyterhub.env.JPY_API_TOKEN"])
def test_admin_may_not_override_builtins(name: str) -> None:
    built = variables.builtin_variables(facts(), {})
    with pytest.raises(ValueError, match="set by the spawner"):
        variables.merge_variables(built, ("extra_variables", {name: "x"}))


def test_none_values_are_refused() -> None:
    with pytest.raises(ValueError, match="'x' has no value"):
        variables.merge_variables({}, ("variables_hook", {"x": None}))


def test_instance_body_is_a_valid_instance_without_the_token() -> None:
    f = facts("alice", "gpu")
    values = variables.builtin_variables(f, ENV)
    body = manifests.instance_body(f.instance_name, "default", "default-template", "kadense",
                                   values, "alice", "gpu")
    parsed = Instance.from_dict(body)
    assert parsed.name == instance_name_for_user("alice", "gpu")
    assert parsed.template.namespace == "kadense"
    assert body["spec"]["variablesFrom"] == [
        {"secretRef": {"name": f"{f.instance_name}-hub"}}]
    assert "secret-token" not in repr(body)
    assert body["metadata"]["labels"][manifests.SPAWNER_LABEL[0]] == "jupyterhub"


def test_odd_user_names_get_valid_label_values_and_exact_annotations() -> None:
    user = "Émile@example.org"
    body = manifests.instance_body("x", "default", "t", None, {}, user, "")
    labels = body["metadata"]["labels"]
    assert body["metadata"]["annotations"][manifests.USER_ANNOTATION] == user
    assert all(len(v) <= 63 for v in labels.values())
    assert "namespace" not in body["spec"]["template"]


def test_secret_body_and_owner_patch() -> None:
    body = manifests.secret_body("abc", "default", variables.secret_data("t"))
    assert body["metadata"]["name"] == "abc-hub"
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "jupyternetes"
    owner = manifests.owner_patch("abc", "uid-1")["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("JupyterNotebookInstance", "abc",
                                                            "uid-1")
