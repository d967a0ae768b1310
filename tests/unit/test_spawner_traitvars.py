"""KubeSpawner's common traits as `jupyterhub.spawner.*` variables (pure), checked against the
hub's own trait parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jupyterhub.traitlets import ByteSpecification
from traitlets import HasTraits, TraitError

from jupyternetes.render import hubvars
from jupyternetes.render.placeholders import substitute_value
from jupyternetes.spawner import traitvars


def render_value(text: str, variables: dict[str, str]) -> object:
    missing: list = []
    value = substitute_value(text, {k.lower(): v for k, v in variables.items()}, "p", missing)
    assert not missing, missing
    return value


class _Bytes(HasTraits):
    value = ByteSpecification()


def hub_bytes(value: object) -> int | None:
    holder = _Bytes()
    try:
        holder.value = value
    except (TraitError, ValueError, OverflowError):  # nan/inf reach int() in the hub
        return None
    return holder.value


@given(st.one_of(
    st.integers(min_value=0, max_value=2 ** 50),
    st.builds(lambda n, u: f"{n}{u}", st.integers(min_value=0, max_value=10 ** 6),
              st.sampled_from("KMGT")),
    st.builds(lambda n, u: f"{n}{u}", st.floats(min_value=0, max_value=4096, allow_nan=False),
              st.sampled_from("KMGT")),
    st.sampled_from(["nanK", "infG", "1e3M", "-1G", "G", "", "1g"]),
    st.text(max_size=6)))
def test_bytes_parse_as_the_hub_parses_them(value: object) -> None:
    expected = hub_bytes(value)
    try:
        ours = traitvars.parse_bytes(value)
    except ValueError:
        ours = None
    assert ours == expected, value


def test_bytes_examples() -> None:
    assert traitvars.parse_bytes("1G") == 1024 ** 3
    assert traitvars.parse_bytes("1.5M") == 1572864
    assert traitvars.parse_bytes(512) == 512
    with pytest.raises(ValueError, match="like 512M or 2G"):
        traitvars.parse_bytes("2Gi")


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_cores_render_as_the_same_json_number(cores: float) -> None:
    text = traitvars.number_text(cores)
    assert render_value("{c:number}", {"c": text}) == cores


@given(st.text(min_size=1, max_size=30))
def test_map_keys_become_placeholder_names(key: str) -> None:
    name = hubvars.spawner_variable("node_selector", traitvars.key_name(key))
    assert render_value(f"{{{name}}}", {name: "v"}) == "v"


def test_overrides_replace_values_and_merge_dicts_in_order() -> None:
    base = {"image": "a", "cpu_limit": 1.0, "mem_limit": 1024 ** 3, "cpu_guarantee": None,
            "mem_guarantee": None, "extra_resource_limits": {"nvidia.com/gpu": "1"},
            "extra_resource_guarantees": {}, "node_selector": {"pool": "cpu", "zone": "a"}}
    values = traitvars.effective(base, [
        ("profile 'gpu'", {"image": "b", "cpu_limit": "2.5", "mem_limit": "2G",
                           "node_selector": {"pool": "gpu", "zone": None}}),
        ("option 'size' choice 'l'", {"mem_guarantee": "512M", "extra_resource_limits": {
            "example.com/fpga": 2}})])
    assert traitvars.spawner_variables(values) == {
        "jupyterhub.spawner.image": "b",
        "jupyterhub.spawner.cpu_limit": "2.5",
        "jupyterhub.spawner.mem_limit": str(2 * 1024 ** 3),
        "jupyterhub.spawner.mem_guarantee": str(512 * 1024 ** 2),
        "jupyterhub.spawner.extra_resource_limits.example.com_fpga": "2",
        "jupyterhub.spawner.extra_resource_limits.nvidia.com_gpu": "1",
        "jupyterhub.spawner.node_selector.pool": "gpu",
    }
    assert traitvars.env_overrides(values) == {"CPU_LIMIT": "2.5",
                                               "MEM_LIMIT": str(2 * 1024 ** 3),
                                               "MEM_GUARANTEE": str(512 * 1024 ** 2)}


def test_unset_traits_are_not_sent() -> None:
    assert traitvars.spawner_variables(traitvars.effective({}, [])) == {}


@pytest.mark.parametrize(("layer", "message"), [
    ({"mem_limit": "lots"}, r"profile 'x': mem_limit: 'lots' is not a byte size"),
    ({"cpu_limit": "two"}, r"profile 'x': cpu_limit: 'two' is not a number of cores"),
    ({"image": 3}, r"profile 'x': image: must be a string"),
    ({"node_selector": ["a"]}, r"profile 'x': node_selector: must be a dict"),
])
def test_bad_values_name_where_they_were_set(layer: dict, message: str) -> None:
    with pytest.raises(traitvars.TraitValueError, match=message):
        traitvars.effective({}, [("profile 'x'", layer)])


def test_two_keys_that_become_one_name_are_refused() -> None:
    values = traitvars.effective({"node_selector": {"a/b": "1", "a_b": "2"}}, [])
    with pytest.raises(traitvars.TraitValueError, match="rename one"):
        traitvars.spawner_variables(values)


def test_every_trait_is_a_spawner_setting_and_documented() -> None:
    from pathlib import Path

    from jupyternetes.spawner.spawner import JupyternetesSpawner

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = readme.split("### KubeSpawner's traits as variables", 1)[1].split("\n### ", 1)[0]
    for trait in hubvars.SPAWNER_TRAITS:
        assert JupyternetesSpawner.class_traits(config=True).get(trait) is not None, trait
        assert f"`{trait}`" in section, trait
