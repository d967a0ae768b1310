"""The Spawner class on the hub's own objects (orm in memory, no cluster): config, state,
variables from the real get_env(), profile errors before anything is created."""

from __future__ import annotations

import asyncio

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.spawner import SpawnException
from jupyterhub.user import User

from jupyternetes.crd.naming import instance_name_for_user
from jupyternetes.spawner import accounts
from jupyternetes.spawner.spawner import JupyternetesSpawner


def make_spawner(server: str = "", **config: object) -> JupyternetesSpawner:
    db = orm.new_session_factory("sqlite:///:memory:")()
    orm_user = orm.User(name="alice")
    db.add(orm_user)
    if server:
        db.add(orm.Spawner(user=orm_user, name=server))
    db.commit()
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    user = User(orm_user, settings={"spawner_class": JupyternetesSpawner, "hub": hub, "db": db,
                                    "domain": "", "allow_named_servers": True}, db=db)
    spawner = user.spawners[server]
    for key, value in config.items():
        setattr(spawner, key, value)
    spawner.api_token = "fresh-token"
    return spawner


def test_defaults_fit_a_pod() -> None:
    spawner = make_spawner(namespace="users")
    assert (spawner.ip, spawner.port) == ("0.0.0.0", 8888)
    assert spawner.env_keep == []
    assert spawner.namespace == "users"


def test_log_lines_name_the_server_as_the_hub_does() -> None:
    assert make_spawner()._server_label() == "alice"
    assert make_spawner("gpu")._server_label() == "alice:gpu"


def test_namespace_defaults_to_the_hub_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "hubns")
    spawner = make_spawner()
    assert (spawner.hub_namespace, spawner.namespace) == ("hubns", "hubns")


def test_the_account_comes_from_the_hubs_user_record() -> None:
    """Same for every server of the user and after a hub restart; no spawner state needed."""
    default, named = make_spawner(), make_spawner("gpu")
    assert default._account() is not None
    assert default.user.created is not None
    assert default._account() == accounts.account_id("alice", default.user.created)
    assert named.user.name == "alice" and named._account() == accounts.account_id(
        "alice", named.user.created)
    assert default.delete_pvc is True  # safe by default, as KubeSpawner


def test_state_round_trip_finds_the_same_instance() -> None:
    spawner = make_spawner("gpu", namespace="users")
    spawner.instance_name = instance_name_for_user("alice", "gpu")
    spawner.instance_uid = "uid-1"
    spawner.profile_slug = "big"
    spawner.token_share = "00ff"
    state = spawner.get_state()
    again = make_spawner("gpu")
    again.load_state(state)
    assert (again.instance_name, again.instance_uid, again.profile_slug, again.namespace,
            again.token_share) == (spawner.instance_name, "uid-1", "big", "users", "00ff")
    again.clear_state()
    assert again.get_state() == {}

    class NothingLeft:
        def cached_instance(self, name: str) -> None:
            return None

    async def cluster() -> NothingLeft:
        return NothingLeft()

    again._cluster = cluster  # type: ignore[method-assign]
    assert asyncio.run(again.poll()) == 0  # no state, nothing left over: not running


def test_variables_from_the_hub_env_hook_and_profile() -> None:
    async def hook(spawner: JupyternetesSpawner) -> dict:
        return {"home": f"/home/{spawner.user.name}"}

    spawner = make_spawner("gpu", namespace="users", hub_namespace="hub",
                           extra_variables={"image": "a"}, variables_hook=hook,
                           profile_list=[{"display_name": "Big", "template_name": "big",
                                          "variables": {"image": "b"}}])
    spawner.instance_name = instance_name_for_user("alice", "gpu")
    profiles = asyncio.run(spawner._profiles())
    values = asyncio.run(spawner.instance_variables(profiles[0]))
    assert values["image"] == "b"
    assert values["home"] == "/home/alice"
    assert values["jupyterhub.server.name"] == "gpu"
    assert values["jupyterhub.namespace"] == "hub"
    assert values["jupyterhub.oauth_client_id"] == "jupyterhub-user-alice-gpu"
    assert values["jupyterhub.env.JUPYTERHUB_OAUTH_CALLBACK_URL"] == \
        "/user/alice/gpu/oauth_callback"
    assert "fresh-token" not in values.values()


def test_unknown_profile_fails_before_anything_is_created() -> None:
    spawner = make_spawner(profile_list=[{"display_name": "A", "template_name": "a"}],
                           kubeconfig="/nonexistent/kubeconfig")
    spawner.user_options = {"profile": "zzz"}
    with pytest.raises(SpawnException, match="unknown profile 'zzz'; choose one of: 'a'"):
        asyncio.run(spawner.start())


def test_callable_profile_list_feeds_the_form() -> None:
    async def profiles(spawner: JupyternetesSpawner) -> list:
        return [{"display_name": "A", "template_name": "a"},
                {"display_name": "B", "template_name": "b", "default": True}]

    spawner = make_spawner(profile_list=profiles)
    form = asyncio.run(spawner.get_options_form())
    assert "value='b' checked" in form
    assert spawner.run_options_from_form({"profile": ["a"]}) == {"profile": "a"}


def test_hub_template_renders_with_the_variables_of_a_real_spawn() -> None:
    """Every `{jupyterhub.env.*}` the example template uses is one the hub's get_env() sets."""
    import yaml

    from jupyternetes.crd.model import Instance, Template
    from jupyternetes.render.objects import render
    from jupyternetes.spawner import manifests

    spawner = make_spawner("gpu", namespace="users")
    spawner.orm_spawner.server = orm.Server(proto="http", ip="", port=0, cookie_name="c",
                                               base_url="/user/alice/gpu/")
    spawner.instance_name = instance_name_for_user("alice", "gpu")
    values = asyncio.run(spawner.instance_variables(None))
    with open("examples/spawner-template.yaml") as f:
        template = Template.from_dict(yaml.safe_load(f) | {}, "examples/spawner-template.yaml")
    body = manifests.instance_body(spawner.instance_name, "users", "spawner-template", None,
                                   values,
                                   "alice", "gpu")
    pod = render(template, Instance.from_dict(body)).pods[0].manifest
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/alice/gpu/"
    assert env["JUPYTERHUB_SERVICE_URL"] == "http://0.0.0.0:8888/user/alice/gpu/"
    assert env["JUPYTERHUB_SERVER_NAME"] == "gpu"
    assert env["JUPYTERHUB_API_TOKEN"] is None  # by reference to the Secret
    token_ref = pod["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
    assert token_ref["name"] == manifests.secret_name(spawner.instance_name)


def test_a_real_spawn_provides_every_variable_lint_assumes() -> None:
    """`jupyternetes lint` renders templates with hubvars' names: a template it passes must
    find each of them at a real spawn (in spec.variables or, tokens, in the Secret)."""
    from jupyternetes.render import hubvars
    from jupyternetes.spawner import variables

    spawner = make_spawner("gpu", namespace="users")
    spawner.orm_spawner.server = orm.Server(proto="http", ip="", port=0, cookie_name="c",
                                            base_url="/user/alice/gpu/")
    spawner.instance_name = instance_name_for_user("alice", "gpu")
    values = asyncio.run(spawner.instance_variables(None))
    provided = set(values) | set(variables.secret_data("t"))
    assert set(hubvars.sample_variables()) <= provided
