"""hubvars against the installed JupyterHub: the names lint assumes are the ones get_env() sets.

A JupyterHub upgrade that adds or drops a get_env() key fails here, instead of leaving lint
rejecting (or accepting) a placeholder that real spawns give (or don't).
"""

from __future__ import annotations

from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.spawner import Spawner
from jupyterhub.user import User
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from jupyternetes.render import hubvars

TOKEN = "fresh-token"


def hub_spawner() -> Spawner:
    """JupyterHub's own base Spawner for user alice's default server, on the hub's orm objects
    (in-memory database) as a spawn has them: a server with its URL prefix, a fresh token."""
    # The hub's tables made directly: orm.new_session_factory also runs an alembic stamp, whose
    # env module imports the whole hub app (6 s idle, a minute on a loaded CI box).
    engine = create_engine("sqlite://", poolclass=StaticPool)
    orm.Base.metadata.create_all(engine)
    db = sessionmaker(bind=engine, expire_on_commit=False)()
    orm_user = orm.User(name="alice")
    db.add(orm_user)
    db.commit()
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    user = User(orm_user, settings={"spawner_class": Spawner, "hub": hub, "db": db,
                                    "domain": ""}, db=db)
    spawner = user.spawners[""]
    spawner.orm_spawner.server = orm.Server(proto="http", ip="", port=0, cookie_name="c",
                                            base_url="/user/alice/")
    spawner.api_token = TOKEN
    # env_keep copies the hub process's own environment (PATH, LANG, ...): what it holds depends
    # on where the hub runs, not on JupyterHub, so it is no name every server gets.
    spawner.env_keep = []
    return spawner


def test_hub_env_names_are_every_key_get_env_sets_under_default_config() -> None:
    env = hub_spawner().get_env()
    names = set(hubvars.HUB_ENV_NAMES)
    assert len(names) == len(hubvars.HUB_ENV_NAMES), "a name listed twice"
    assert set(env) == names, (f"get_env() of JupyterHub sets {sorted(set(env) - names)} "
                               f"that HUB_ENV_NAMES lacks; HUB_ENV_NAMES has "
                               f"{sorted(names - set(env))} that get_env() no longer sets")


def test_token_names_are_every_key_holding_the_token() -> None:
    # The spawner keeps these out of spec.variables (Secret only): a new key carrying the token
    # would otherwise be written in plain text into the instance.
    env = hub_spawner().get_env()
    assert {key for key, value in env.items() if value == TOKEN} == hubvars.TOKEN_ENV_NAMES
    assert hubvars.API_TOKEN_ENV in hubvars.TOKEN_ENV_NAMES

