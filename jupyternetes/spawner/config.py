"""The JupyternetesSpawner's configuration: its traits, and the defaults of JupyterHub's
Spawner traits it changes.

A traits-only base class the spawner inherits first (JupyterHub forbids Spawner subclasses that
do not define start/stop/poll, so it is no Spawner itself). The admin configures it as
`c.JupyternetesSpawner.<trait>`: traitlets applies a class's config section to every trait
the class has, inherited ones included.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import (
    Bool,
    Callable,
    Dict,
    Float,
    HasTraits,
    Integer,
    List,
    Unicode,
    Union,
    default,
)

from jupyternetes.spawner import names

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def hub_namespace() -> str:
    """The namespace the hub runs in: service account file, then $POD_NAMESPACE, else default."""
    try:
        text = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        if text:
            return text
    except OSError:
        pass
    return os.environ.get("POD_NAMESPACE") or "default"


class JupyternetesSpawnerConfig(HasTraits):
    """The settings of JupyternetesSpawner (configure them on `c.JupyternetesSpawner`); the
    defaults below read `self.user` / `self.name`, which the Spawner it is mixed into has."""

    namespace = Unicode(help="Namespace of the instances (default: the hub's namespace).").tag(
        config=True)
    hub_namespace = Unicode(help="The hub's namespace (`{jupyterhub.namespace}`); default: the "
                            "service account's namespace, $POD_NAMESPACE, else `default`.").tag(
        config=True)
    kubeconfig = Unicode(None, allow_none=True,
                         help="Kubeconfig file; default $KUBECONFIG, ~/.kube/config, else the "
                         "in-cluster service account.").tag(config=True)
    kube_context = Unicode(None, allow_none=True, help="Kubeconfig context.").tag(config=True)
    template_name = Unicode("default-template",
                            help="JupyterNotebookTemplate used when no profile is chosen.").tag(
        config=True)
    template_namespace = Unicode("", help="Namespace of `template_name` (default: the "
                                 "instance's namespace).").tag(config=True)
    profile_list = Union([List(Dict()), Dict(), Callable()], default_value=[], help="""
        Choices on the spawn page, as KubeSpawner 7's profile_list (spawner/profiles.py): each
        a dict: display_name, slug (default: from display_name), description, template_name
        (or template: {name, namespace}), template_namespace, variables (dict), default
        (bool), profile_options (choices, unlisted_choice), allowed_groups (JupyterHub groups
        that see it; default everyone), kubespawner_override (image, cpu_limit, ...). May be a
        callable(spawner) returning the list (may be async). The user picks one with
        user_options {"profile": slug, "<option>": choice}.""").tag(config=True)
    profile_form_template = Unicode("", help="""
        Jinja2 template of the spawn page (as KubeSpawner's), rendered with `profile_list`
        (the user's profiles, KubeSpawner-shaped) and `user_options`.""").tag(config=True)
    additional_profile_form_template_paths = List(Unicode(), help="""
        Folders searched for a Jinja2 `form.html` of the spawn page (as KubeSpawner's), e.g.
        jupyterhub_fancy_profiles.TEMPLATE_PATHS.""").tag(config=True)
    image = Unicode(None, allow_none=True, help="""
        KubeSpawner's `image`, sent as the variable `jupyterhub.spawner.image` when set (the
        template decides where it goes).""").tag(config=True)
    extra_resource_limits = Dict(help="KubeSpawner's, sent as `jupyterhub.spawner."
                                 "extra_resource_limits.<name>` variables.").tag(config=True)
    extra_resource_guarantees = Dict(help="KubeSpawner's, sent as `jupyterhub.spawner."
                                     "extra_resource_guarantees.<name>` variables.").tag(
        config=True)
    node_selector = Dict(help="KubeSpawner's, sent as `jupyterhub.spawner.node_selector."
                         "<label>` variables.").tag(config=True)
    extra_variables = Dict(help="Variables added to every instance (name -> string).").tag(
        config=True)
    variables_hook = Callable(None, allow_none=True, help="""
        callable(spawner) -> dict of per-user variables (may be async), added last.""").tag(
        config=True)
    pod_entry = Unicode("", help="Template pod entry of the notebook server (default: the first "
                        "pod with an address).").tag(config=True)
    delete_pvc = Bool(True, help="""
        When a user, or a named server, is deleted for good (the hub's delete_forever): True
        (default, as KubeSpawner) deletes the server's PVCs; False keeps them but releases
        them: the instance and account labels are removed and a
        `jupyternetes.kadense.io/released-from` annotation says from whom and when, so no
        server adopts them again (a new user of the same name included) until an admin hands
        one over with `kubectl annotate pvc <name> jupyternetes.kadense.io/adopt=<instance>`.
        Needs `delete` (True) or `patch` (False) on persistentvolumeclaims for the hub.""").tag(
        config=True)
    api_workers = Integer(8, help="Threads for blocking Kubernetes API calls (hub-wide).").tag(
        config=True)
    delete_timeout = Float(300, help="Seconds stop() waits for the instance and its pods to "
                           "go.").tag(config=True)
    pod_delete_grace = Float(30, help="""
        Seconds stop() waits for the operator to remove the server's pods; after that (the
        operator is down or stuck) the spawner deletes them itself and the stop completes,
        leaving the instance, marked for deletion, for the operator to finish (its PVCs stay).
        Needs `delete` on pods for the hub.""").tag(config=True)

    enable_user_namespaces = Bool(False, help="""
        Put each user's servers into the user's own namespace (`user_namespace_template`),
        created at the first spawn with the label jupyternetes.kadense.io/user-namespace=true
        (run the operator with `--namespace-selector` on it), the user label and
        `user_namespace_labels`/`user_namespace_annotations`, and the user's name in its
        hub.jupyter.org/username annotation: an existing namespace of another user is never
        used. Needs create/get on namespaces for the hub (README, "User namespaces").""").tag(
        config=True)
    user_namespace_template = Unicode(names.DEFAULT_USER_NAMESPACE_TEMPLATE, help="""
        The user's namespace with enable_user_namespaces: {username}, {servername},
        {hubnamespace} (`default` becomes `user`), made a DNS label (verbatim when it is one,
        else cleaned up with a hash suffix, so names never collide).""").tag(config=True)
    user_namespace_labels = Dict(help="Extra labels of a new user namespace.").tag(config=True)
    user_namespace_annotations = Dict(help="Extra annotations of a new user namespace.").tag(
        config=True)
    user_namespace_quota = Dict(help="""spec of a ResourceQuota created in each new user
        namespace (e.g. {"hard": {"requests.cpu": "4", "persistentvolumeclaims": "2"}});
        empty: none.""").tag(config=True)
    user_namespace_role_bindings = List(Dict(), help="""
        RoleBindings created in each new user namespace, each {name, clusterRole,
        serviceAccount: {name, namespace}}: how the hub and the operator get their rights
        there (the deploy stack exports the list as `hubUserNamespaceRoleBindings`).""").tag(
        config=True)
    instance_name_template = Unicode("", help="""
        Instance names, e.g. 'hub2-{uuid}' so that two hubs can share a namespace; {uuid}
        (required) is the default name, uuid5 of user and server. Also {username},
        {servername}, {hubnamespace}. Empty (default): the default name.""").tag(config=True)

    @default("namespace")
    def _default_namespace(self) -> str:
        if self.enable_user_namespaces:
            return names.user_namespace(self.user_namespace_template, self.user.name,
                                        self.name or "", self.hub_namespace)
        return self.hub_namespace

    @default("hub_namespace")
    def _default_hub_namespace(self) -> str:
        return hub_namespace()

    # The server listens on every interface of its pod, on a fixed port (as in KubeSpawner).
    @default("ip")
    def _default_ip(self) -> str:
        return "0.0.0.0"

    @default("port")
    def _default_port(self) -> int:
        return 8888

    # The hub's own environment (PATH, ...) means nothing inside a pod.
    @default("env_keep")
    def _default_env_keep(self) -> list:
        return []

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        return 300  # a stack up plus an image pull; failures end it early anyway

    @default("http_timeout")
    def _default_http_timeout(self) -> int:
        return 120  # the pod is Ready before the notebook process listens (no probes)
