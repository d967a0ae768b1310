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


def make_spawner(server: str = "", groups: tuple[str, ...] = (),
                 **config: object) -> JupyternetesSpawner:
    db = orm.new_session_factory("sqlite:///:memory:")()
    orm_user = orm.User(name="alice")
    db.add(orm_user)
    for group in groups:
        orm_user.groups.append(orm.Group(name=group))
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
    values = asyncio.run(spawner.instance_variables(asyncio.run(spawner._selection())))
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


PROFILES = [
    {"display_name": "Plain", "slug": "plain", "template_name": "plain"},
    {"display_name": "GPU", "slug": "gpu", "template_name": "gpu", "allowed_groups": ["gpu"],
     "kubespawner_override": {"mem_limit": "4G", "extra_resource_limits": {"nvidia.com/gpu": "1"}},
     "profile_options": {"image": {
         "display_name": "Image",
         "choices": {"torch": {"display_name": "Torch",
                               "kubespawner_override": {"image": "jupyter/torch:2"}}},
         "unlisted_choice": {"enabled": True, "validation_regex": "^jupyter/.+:.+$",
                             "kubespawner_override": {"image": "{value}"},
                             "variables": {"image.tag.source": "user"}}}}},
]


def test_options_are_checked_by_the_hubs_apply_user_options_hook() -> None:
    """A bad value fails the spawn request itself (HTTP 400 naming the option)."""
    from tornado import web

    spawner = make_spawner(groups=("gpu",), profile_list=PROFILES)
    hook = spawner.apply_user_options
    asyncio.run(hook(spawner, {"profile": "gpu", "image--unlisted-choice": "jupyter/me:1"}))
    with pytest.raises(web.HTTPError) as raised:
        asyncio.run(hook(spawner, {"profile": "gpu", "image--unlisted-choice": "evil/x:1"}))
    assert raised.value.status_code == 400
    assert "profile option 'image' of profile 'gpu': 'evil/x:1' does not match" in \
        raised.value.log_message % raised.value.args
    outsider = make_spawner(profile_list=PROFILES)
    with pytest.raises(web.HTTPError, match="not offered to alice"):
        asyncio.run(outsider.apply_user_options(outsider, {"profile": "gpu"}))


def test_a_group_restricted_profile_is_not_on_the_form_of_others() -> None:
    member = make_spawner(groups=("gpu",), profile_list=PROFILES)
    other = make_spawner(groups=("staff",), profile_list=PROFILES)
    assert "value='gpu'" in asyncio.run(member.get_options_form())
    assert "gpu" not in asyncio.run(other.get_options_form())


def test_overrides_become_spawner_variables_and_the_env_follows() -> None:
    spawner = make_spawner(groups=("gpu",), profile_list=PROFILES, image="jupyter/base:1",
                           cpu_limit=1.5, mem_limit="1G", node_selector={"pool": "cpu"})
    spawner.user_options = {"profile": "gpu", "image--unlisted-choice": "jupyter/me:1"}
    values = asyncio.run(spawner.instance_variables(asyncio.run(spawner._selection())))
    assert values["jupyterhub.spawner.image"] == "jupyter/me:1"
    assert values["jupyterhub.spawner.cpu_limit"] == "1.5"
    assert values["jupyterhub.spawner.mem_limit"] == str(4 * 1024 ** 3)
    assert values["jupyterhub.spawner.extra_resource_limits.nvidia.com_gpu"] == "1"
    assert values["jupyterhub.spawner.node_selector.pool"] == "cpu"
    assert values["image.tag.source"] == "user"
    assert values["jupyterhub.env.MEM_LIMIT"] == str(4 * 1024 ** 3)
    assert values["jupyterhub.env.CPU_LIMIT"] == "1.5"
    spawner.user_options = {"profile": "plain"}
    plain = asyncio.run(spawner.instance_variables(asyncio.run(spawner._selection())))
    assert plain["jupyterhub.spawner.image"] == "jupyter/base:1"
    assert plain["jupyterhub.env.MEM_LIMIT"] == str(1024 ** 3)
    assert "jupyterhub.spawner.extra_resource_limits.nvidia.com_gpu" not in plain


def test_spawner_variables_are_not_set_by_hand() -> None:
    spawner = make_spawner(extra_variables={"jupyterhub.spawner.image": "x"})
    with pytest.raises(ValueError, match="set the trait on the spawner"):
        asyncio.run(spawner.instance_variables(None))


def test_a_jinja_form_template_gets_kubespawners_profile_list() -> None:
    """As KubeSpawner renders `form.html`: jupyterhub-fancy-profiles' template reads
    `profile_list|tojson` and posts `profile-option-<slug>--<option>` fields."""
    import json

    spawner = make_spawner(groups=("gpu",), profile_list=PROFILES,
                           profile_form_template="<script>{{ profile_list|tojson }}</script>"
                                                 "{{ user_options.profile }}")
    spawner.user_options = {"profile": "gpu"}
    form = asyncio.run(spawner.get_options_form())
    shaped = json.loads(form[len("<script>"):form.index("</script>")])
    assert [p["slug"] for p in shaped] == ["plain", "gpu"]
    assert shaped[1]["profile_options"]["image"]["unlisted_choice"]["enabled"] is True
    assert form.endswith("gpu")
    assert spawner.run_options_from_form({
        "profile": ["gpu"], "profile-option-gpu--image": ["unlisted_choice"],
        "profile-option-gpu--image--unlisted-choice": ["jupyter/me:1"]}) == {
        "profile": "gpu", "image--unlisted-choice": "jupyter/me:1"}


def test_an_unlisted_value_for_a_typed_trait_is_checked_by_the_hook_too() -> None:
    from tornado import web

    sized = [{"display_name": "A", "template_name": "a", "profile_options": {"memory": {
        "unlisted_choice": {"enabled": True, "kubespawner_override": {"mem_limit": "{value}"}}}}}]
    spawner = make_spawner(profile_list=sized)
    asyncio.run(spawner.apply_user_options(spawner, {"memory--unlisted-choice": "2G"}))
    with pytest.raises(web.HTTPError, match="mem_limit: 'lots' is not a byte size"):
        asyncio.run(spawner.apply_user_options(spawner, {"memory--unlisted-choice": "lots"}))
