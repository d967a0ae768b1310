"""harness/hub.py: the generated jupyterhub_config.py, loaded the way jupyterhub loads it."""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from harness.hub import render_config


def load(text: str) -> Config:
    c = Config()
    exec(compile(text, "jupyterhub_config.py", "exec"), {"get_config": lambda: c})
    return c


def render(**overrides) -> str:
    args = dict(root=Path("/tmp/hub root"), hub_port=8081, proxy_port=8000,
                proxy_api_port=8001, proxy_token="p" * 8, service_token="s" * 8,
                password="pass'word\"x", spawner_class="jupyternetes",
                spawner_config={"namespace": "users", "kubeconfig": "/k/c'fg",
                                "extra_variables": {"a": "1"}},
                extra_config="")
    args.update(overrides)
    return render_config(**args)


def test_hub_settings_a_kubernetes_hub_needs():
    c = load(render())
    hub = c.JupyterHub
    assert hub.bind_url == "http://127.0.0.1:8000"
    assert hub.hub_bind_url == "http://127.0.0.1:8081"
    assert hub.db_url == "sqlite:////tmp/hub root/jupyterhub.sqlite"
    assert hub.cleanup_servers is False
    assert hub.allow_named_servers is True
    assert hub.spawner_class == "jupyternetes"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:8001"
    assert hub.services == [{"name": "e2e", "api_token": "s" * 8}]
    assert hub.load_roles == [{"name": "admin", "services": ["e2e"]}]


def test_values_are_python_literals_whatever_they_contain():
    c = load(render())
    assert c.SharedPasswordAuthenticator.user_password == "pass'word\"x"
    assert c.JupyternetesSpawner.kubeconfig == "/k/c'fg"
    assert c.JupyternetesSpawner.namespace == "users"
    assert c.JupyternetesSpawner.extra_variables == {"a": "1"}


def test_extra_config_comes_last_and_wins():
    c = load(render(extra_config="c.JupyterHub.cleanup_servers = True\nc.Spawner.debug = True"))
    assert c.JupyterHub.cleanup_servers is True
    assert c.Spawner.debug is True
