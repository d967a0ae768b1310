"""`JupyternetesSpawner`: JupyterHub servers as JupyterNotebookInstances (JupyterHub 6.x API).

start: token Secret, then the instance (variables + `variablesFrom` the Secret), then the
Secret's ownerReference; returns `http://<podAddress>:<portNumber>` once the instance is Ready,
or raises `SpawnException` with the instance's own message as soon as its status says it failed.
stop: delete the instance, return once its pods are gone (PVCs stay); with no operator, the
spawner deletes the pods itself after `pod_delete_grace` (spawner.stopping).
Lifecycle edges (spawner.serverobjects): a spawn the hub cancels (a stop while starting) leaves
no instance or token Secret; a spawn interrupted by a hub restart is removed at the hub's start
(its poll finds the instance with no saved state); a restored spawner joins its server's token
from its two halves (spawner.tokenshare), so the hub revokes it at the stop; a spawn that no
operator answers fails just before `start_timeout` saying so (decisions.timeout_message).
poll / progress: from the hub-wide watch cache (`cluster.SharedCluster`), never a relist per user.
delete_forever (the user or the named server deleted for good): the claims are deleted
(`delete_pvc`, the default) or released, so a later account of the same name never gets them
(`accounts`: every instance carries its account's id, and the operator adopts a claim only for
the same account).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from inspect import isawaitable
from typing import Any

from jupyterhub.spawner import Spawner, SpawnException
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from traitlets import Unicode, default

from jupyternetes.crd.labels import LABEL_ACCOUNT, LABEL_ENTRY_GROUP, LABEL_INSTANCE
from jupyternetes.kube.errors import KubeError
from jupyternetes.render import hubvars
from jupyternetes.spawner import (
    accounts,
    decisions,
    formtemplate,
    ksnames,
    manifests,
    names,
    namespaces,
    profileform,
    profiles,
    progress,
    serverobjects,
    stopping,
    tokenshare,
    traitvars,
    variables,
)
from jupyternetes.spawner.cluster import SharedCluster
from jupyternetes.spawner.config import JupyternetesSpawnerConfig
from jupyternetes.spawner.selection import Selection, select, visible_profiles

# Re-check the cache at least this often while waiting, in case a watch event was lost.
RECHECK_SECONDS = 5.0
ANSWER_PROBE_SECONDS = 0.2


async def _maybe_await(value: Any) -> Any:
    return await value if isawaitable(value) else value


class JupyternetesSpawner(JupyternetesSpawnerConfig, Spawner):
    """Spawn each server as a JupyterNotebookInstance rendered by the jupyternetes operator."""

    # Set by start() / load_state().
    instance_name = Unicode("")
    instance_uid = Unicode("")
    profile_slug = Unicode("")
    token_share = Unicode("")  # spawner.tokenshare: the hub's half of the server's token

    @default("options_form")
    def _default_options_form(self) -> Any:
        return self._profile_form

    @default("options_from_form")
    def _default_options_from_form(self) -> Any:
        return profileform.options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        return JupyternetesSpawner._check_user_options

    # ---- helpers ----------------------------------------------------------------------------

    async def _cluster(self) -> SharedCluster:
        cluster = SharedCluster.existing(self.namespace, self.kubeconfig, self.kube_context)
        if cluster is None:
            # Loading a kubeconfig (cert files, SSL contexts) takes ~1 s on a busy box: in a
            # thread, so the first spawn does not stall the hub's event loop.
            cluster = await asyncio.to_thread(SharedCluster.get, self.namespace,
                                              self.kubeconfig, self.kube_context,
                                              self.api_workers)
        await cluster.start()
        return cluster

    async def _profiles(self) -> tuple[profiles.Profile, ...]:
        raw = self.profile_list
        if callable(raw):
            raw = await _maybe_await(raw(self))
        return profiles.parse_profiles(raw or [])

    def _groups(self) -> list[str]:
        return [group.name for group in getattr(self.user, "groups", None) or []]

    async def _selection(self) -> Selection:
        return select(await self._profiles(), self.user_options, self._groups(),
                      self.user.name)

    async def _check_user_options(self, user_options: dict) -> None:
        """The hub's apply_user_options hook: a choice that does not fit fails the spawn
        request with 400 and the reason, before the hub starts anything."""
        try:
            chosen = select(await self._profiles(), user_options, self._groups(),
                            self.user.name)
            # An unlisted value may land in a typed trait (`mem_limit: "{value}"`).
            traitvars.effective({t: getattr(self, t) for t in traitvars.TRAITS}, [
                (where, {k: v for k, v in layer.items() if not callable(v)})
                for where, layer in chosen.override_layers])
        except (profiles.ProfileError, traitvars.TraitValueError) as exc:
            raise web.HTTPError(400, "%s", str(exc)) from exc

    async def _profile_form(self, spawner: Spawner) -> str:
        offered = visible_profiles(await self._profiles(), self._groups())
        if self.profile_form_template or self.additional_profile_form_template_paths:
            return formtemplate.render_form(
                self.profile_form_template, self.additional_profile_form_template_paths,
                profileform.kubespawner_shaped(offered), self.user_options or {})
        return profileform.options_form_html(offered, self.user_options)

    def _spawn_failure(self, message: str, reason: str) -> SpawnException:
        return SpawnException(message, reason=f"jupyternetes-{reason}", status_code=500)

    def _name(self) -> str:
        return names.instance_name(self.instance_name_template, self.user.name,
                                   self.name or "", self.hub_namespace)

    async def _ensure_user_namespace(self) -> None:
        """With enable_user_namespaces: the user's namespace exists and is theirs."""
        if not self.enable_user_namespaces:
            return
        cluster = await asyncio.to_thread(SharedCluster.get, self.namespace, self.kubeconfig,
                                          self.kube_context, self.api_workers)
        if await cluster.call(namespaces.ensure, cluster.kube, self.namespace, self.user.name,
                              dict(self.user_namespace_labels),
                              dict(self.user_namespace_annotations),
                              dict(self.user_namespace_quota),
                              list(self.user_namespace_role_bindings)):
            self.log.info("jupyternetes: created namespace %s for %s", self.namespace,
                          self._server_label())

    def _server_label(self) -> str:
        """`user:server`, or `user` for the default server: how the hub's own log lines name a
        server (built here from public attributes; the hub's helper for it is private)."""
        return f"{self.user.name}:{self.name}" if self.name else self.user.name

    def _account(self) -> str | None:
        """The account's id (see spawner.accounts): from the hub's record of when the user was
        created, so the same for every server and after every hub restart."""
        created = getattr(self.user, "created", None)
        account = accounts.account_id(self.user.name, created if isinstance(
            created, datetime) else None)
        if account is None:
            self.log.warning("jupyternetes: the hub has no creation time for user %s; their "
                             "claims are not bound to the account (delete_forever still "
                             "deletes or releases them)", self.user.name)
        return account

    # ---- state ------------------------------------------------------------------------------

    def get_state(self) -> dict:
        state = super().get_state()
        if self.instance_name:
            state.update(instance_name=self.instance_name, namespace=self.namespace,
                         instance_uid=self.instance_uid, profile=self.profile_slug,
                         token_share=self.token_share)
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.instance_name = state.get("instance_name", "")
        self.instance_uid = state.get("instance_uid", "")
        self.profile_slug = state.get("profile", "")
        self.token_share = state.get("token_share", "")
        if state.get("namespace"):
            self.namespace = state["namespace"]

    def clear_state(self) -> None:
        super().clear_state()
        self.instance_name = ""
        self.instance_uid = ""
        self.profile_slug = ""
        self.token_share = ""

    # ---- start ------------------------------------------------------------------------------

    async def instance_variables(self, selection: Selection | None) -> dict[str, str]:
        facts = variables.SpawnFacts(
            user_name=self.user.name, user_id=self.user.id, server_name=self.name or "",
            oauth_client_id=self.oauth_client_id, hub_namespace=self.hub_namespace,
            instance_name=self.instance_name, instance_namespace=self.namespace)
        selection = selection or Selection(None, None)
        overrides = []
        for where, layer in selection.override_layers:  # KubeSpawner allows callables here
            overrides.append((where, {k: await _maybe_await(v(self)) if callable(v) else v
                                      for k, v in layer.items()}))
        traits = traitvars.effective({t: getattr(self, t) for t in traitvars.TRAITS}, overrides)
        env = {k: v for k, v in self.get_env().items()
               if k not in hubvars.TRAIT_ENV_NAMES.values()}
        env.update(traitvars.env_overrides(traits))
        builtins = variables.builtin_variables(facts, env)
        builtins.update(traitvars.spawner_variables(traits))
        builtins.update(ksnames.variables(self.user.name, self.name or ""))
        layers: list[tuple[str, dict]] = [("extra_variables", dict(self.extra_variables))]
        layers += [(where, dict(layer)) for where, layer in selection.variable_layers]
        if self.variables_hook is not None:
            hooked = await _maybe_await(self.variables_hook(self))
            layers.append(("variables_hook", dict(hooked or {})))
        return variables.merge_variables(builtins, *layers)

    async def start(self) -> str:
        self._start_finished = asyncio.Event()
        # Our own deadline, just before the hub's: the hub's timeout says nothing ("Spawn
        # failed: "), ours says what is missing.
        self._start_began = time.monotonic()
        self._start_deadline = self._start_began + self.start_timeout - min(
            10.0, max(1.0, 0.1 * self.start_timeout))
        try:
            return await self._start()
        finally:
            self._start_finished.set()

    async def _start(self) -> str:
        try:
            chosen = await self._selection()
        except profiles.ProfileError as exc:
            raise self._spawn_failure(str(exc), "profile") from exc
        try:
            self.instance_name = self._name()
            await self._ensure_user_namespace()
        except ValueError as exc:  # a name template or role binding setting
            raise self._spawn_failure(str(exc), "names") from exc
        except KubeError as exc:
            raise self._spawn_failure(f"{exc.what}: {exc.message}", "namespace") from exc
        cluster = await self._cluster()
        self.profile_slug = chosen.profile.slug if chosen.profile else ""
        try:
            values = await self.instance_variables(chosen)
        except ValueError as exc:
            raise self._spawn_failure(str(exc), "variables") from exc
        template_name = chosen.template.name if chosen.template else self.template_name
        template_ns = (chosen.template.namespace if chosen.template
                       else self.template_namespace) or None
        name, ns = self.instance_name, self.namespace
        try:
            # A left-over instance (the hub lost track, or a crash) would keep a stale token:
            # remove it first, so the pod starts with this spawn's token.
            await stopping.delete_and_wait(
                cluster, name, min(self.delete_timeout, self._start_deadline - time.monotonic()))
        except KubeError as exc:
            if time.monotonic() < self._start_deadline:
                raise self._spawn_failure(f"{exc.what}: {exc.message}", "apiserver") from exc
            raise self._spawn_failure(decisions.timeout_message(
                cluster.cached_instance(name), [], f"{ns}/{name}",
                time.monotonic() - self._start_began), "timeout") from exc
        try:
            body = manifests.instance_body(name, ns, template_name, template_ns, values,
                                           self.user.name, self.name or "", self._account())
            pad, self.token_share = tokenshare.split(self.api_token)
            body["metadata"]["annotations"][tokenshare.PAD_ANNOTATION] = pad
            created = await serverobjects.create_cancel_safe(cluster, manifests.secret_body(
                name, ns, variables.secret_data(self.api_token)), body)
            self.instance_uid = created.instance_uid
        except KubeError as exc:
            raise self._spawn_failure(f"{exc.what}: {exc.message}", "apiserver") from exc
        self.log.info("jupyternetes: created instance %s/%s for %s (template %s/%s)", ns, name,
                      self._server_label(), template_ns or ns, template_name)
        return await self._wait_ready(cluster, name)

    async def _wait_ready(self, cluster: SharedCluster, name: str) -> str:
        """The URL once the instance is Ready and the server answers; a SpawnException as soon
        as the status says it failed (also while the notebook process is still starting)."""
        answer_deadline: float | None = None
        while True:
            instance = cluster.cached_instance(name)
            if instance is not None and instance["metadata"].get("uid") != self.instance_uid:
                instance = None  # the cache still shows the previous instance of that name
            decision = decisions.start_decision(instance, cluster.cached_pods(name),
                                                self.pod_entry)
            if decision.state == decisions.FAILED:
                raise self._spawn_failure(decision.message, decision.reason or "failed")
            left = self._start_deadline - time.monotonic()
            if left <= 0:
                raise self._spawn_failure(decisions.timeout_message(
                    instance, cluster.cached_pods(name), f"{self.namespace}/{name}",
                    time.monotonic() - self._start_began, self.pod_entry), "timeout")
            if decision.state == decisions.READY and decision.url:
                # A Ready pod may not listen yet (no readiness probe). Probing here, often,
                # saves the hub's backoff (up to 5 s between its checks) and turns a process
                # that dies before it answers into the pod's own message instead of a timeout.
                if answer_deadline is None:
                    answer_deadline = time.monotonic() + self.http_timeout
                if await self._answers(decision.url) or time.monotonic() > answer_deadline:
                    return decision.url
                await cluster.wait_change(name, ANSWER_PROBE_SECONDS)
                continue
            await cluster.wait_change(name, min(RECHECK_SECONDS, left))

    async def _answers(self, url: str) -> bool:
        """The server answers below 500 at `<url><prefix>api`, the hub's own check."""
        prefix = self.server.base_url if self.server is not None else "/"
        try:
            response = await AsyncHTTPClient().fetch(
                f"{url}{prefix}api", raise_error=False, follow_redirects=False,
                connect_timeout=2, request_timeout=2)
        except Exception:  # refused, reset, timeout: not there yet
            return False
        return 0 < response.code < 500

    # ---- progress ---------------------------------------------------------------------------

    async def progress(self):
        cluster = await self._cluster()
        tracker = progress.ProgressTracker()
        finished = getattr(self, "_start_finished", None)
        while True:
            name = self.instance_name
            if name:
                instance = cluster.cached_instance(name)
                if instance is not None and instance["metadata"].get("uid") != self.instance_uid:
                    instance = None
                pods = cluster.cached_pods(name) if instance else []
                pvcs = cluster.cached_pvcs(name) if instance else []
                events = cluster.cached_events(name) if instance else []
                steps = progress.status_steps(instance, pvcs, pods, events)
                for event in tracker.update(steps, events):
                    yield event
            finished = finished or getattr(self, "_start_finished", None)
            if finished is not None and finished.is_set():
                return
            await cluster.wait_change(name or "", 1.0 if not name else RECHECK_SECONDS)

    # ---- poll -------------------------------------------------------------------------------

    async def poll(self) -> int | None:
        if not self.instance_name:
            # No saved state: a spawn the hub restarted in the middle of (it saves state only
            # after start), or one stopped before it made anything. Whatever it left goes now,
            # at the hub's start-up check.
            await serverobjects.remove_leftover(await self._cluster(), self._name(),
                                                self.user.name, self.name or "", self.log)
            return 0
        finished = getattr(self, "_start_finished", None)
        if finished is not None and not finished.is_set():
            return None  # still starting
        cluster = await self._cluster()
        name = self.instance_name
        instance = cluster.cached_instance(name)
        if instance is None:
            # The cache may lag a just-created instance; one cheap read settles it.
            instance = await cluster.call(cluster.get_instance, name)
        if instance is not None and self.instance_uid and (
                instance["metadata"].get("uid") != self.instance_uid):
            instance = None  # same name, another instance: ours is gone
        if instance is not None and not self.api_token and self.token_share:
            # Restored after a hub restart: the hub revokes this token at the stop.
            pad = ((instance.get("metadata") or {}).get("annotations") or {}).get(
                tokenshare.PAD_ANNOTATION, "")
            self.api_token = tokenshare.join(pad, self.token_share) or ""
        pods = cluster.cached_pods(name)
        status = decisions.poll_decision(instance, pods)
        if (status is None and instance is not None and self.server is not None
                and decisions.routed_pod_gone(instance, pods, self.server.ip, self.pod_entry)):
            # The proxy's route points at a pod that is gone (decisions.routed_pod_gone).
            self.log.warning("jupyternetes: the pod of %s's server at %s was deleted or "
                             "replaced", self._server_label(), self.server.ip)
            status = decisions.EXIT_POD_REPLACED
        if status is not None and instance is not None and not (
                instance.get("metadata") or {}).get("deletionTimestamp"):
            # The hub calls stop() only for servers poll() says are running, and then forgets
            # this one: delete the dead instance now (its PVCs stay), or it would linger with a
            # failed pod until the user's next start.
            self.log.warning("jupyternetes: server of %s stopped (exit status %s); deleting "
                             "instance %s/%s", self._server_label(), status, self.namespace, name)
            await cluster.call(cluster.delete_instance, name)
        return status

    # ---- stop -------------------------------------------------------------------------------

    async def stop(self, now: bool = False) -> None:
        name = self.instance_name or self._name()
        cluster = await self._cluster()
        try:
            await stopping.delete_and_wait(cluster, name, self.delete_timeout,
                                           self.pod_delete_grace, self._server_label())
        except KubeError as exc:
            raise self._spawn_failure(f"{exc.what}: {exc.message}", "apiserver") from exc

    # ---- delete_forever ---------------------------------------------------------------------

    async def delete_forever(self) -> None:
        """The user or this named server is deleted for good: its claims are deleted
        (`delete_pvc`) or released, never left for a later account of the same name.
        The instance goes first, so no `up` re-labels a claim while it is released."""
        cluster = await self._cluster()
        name = self._name()
        account = self._account()
        try:
            await stopping.delete_and_wait(cluster, name, self.delete_timeout)
            selector = f"{LABEL_INSTANCE}={name},{LABEL_ENTRY_GROUP}=pvcs"
            claims = await cluster.call(cluster.list_pvcs, selector)
            done: list[str] = []
            for pvc in claims:
                claim = pvc["metadata"]["name"]
                if not accounts.is_this_accounts(pvc, account):
                    self.log.warning("jupyternetes: PVC %s/%s belongs to another account "
                                     "(label %s); left as it is", self.namespace, claim,
                                     LABEL_ACCOUNT)
                    continue
                if self.delete_pvc:
                    await cluster.call(cluster.delete_pvc, claim)
                else:
                    await cluster.call(cluster.patch_pvc, claim, accounts.release_patch(
                        self.user.name, self.name or "", account, name, datetime.now(UTC)))
                done.append(claim)
        except KubeError as exc:
            # The hub logs this and deletes the user anyway; the account label still keeps
            # the claims from a later account of the same name.
            raise self._spawn_failure(f"{exc.what}: {exc.message}", "apiserver") from exc
        self.log.info("jupyternetes: %s PVCs %s of %s", "deleted" if self.delete_pvc else
                      "released", ", ".join(done) or "(none)", self._server_label())
