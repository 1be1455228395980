"""Hook for IBM Cloud Schematics workspaces and their Terraform jobs (``ibm-schematics`` ``SchematicsV1``)."""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from ibm_cloud_airflow.exceptions import (
    IbmCloudApiError,
    IbmCloudConfigError,
    IbmCloudNotFoundError,
    IbmCloudPermanentError,
)
from ibm_cloud_airflow.hooks.base import IbmCloudBaseHook, RetryPolicy, map_api_error
from ibm_cloud_airflow.hooks.budget import POLL, TEARDOWN, WORK, BudgetSpec, RequestBudget, request_budget

#: Activity statuses after which a job no longer runs.
TERMINAL_JOB_STATUSES = frozenset({"COMPLETED", "FAILED", "STOPPED"})
#: Workspace statuses in which plan/apply/destroy may be submitted.
READY_WORKSPACE_STATUSES = frozenset({"INACTIVE", "ACTIVE", "FAILED", "STOPPED"})
#: Names excluded from the template tar: Terraform's working data and any local state.
TAR_EXCLUDED_DIRS = frozenset({".terraform", ".git", "__pycache__"})
TAR_EXCLUDED_SUFFIXES = (".tfstate", ".tfstate.backup", ".tfplan")

# How far the Schematics clock may run behind ours when matching a job to the request that started it.
JOB_CLOCK_SKEW_S = 5


def build_template_tar(template_dir: str | os.PathLike[str]) -> bytes:
    """Pack a Terraform folder as an uncompressed tar for ``template_repo_upload``.

    Symlinks are dereferenced (files *and* directories), and ``.terraform/``, ``.git/``, state files
    and plan files are left out. Entries are sorted so that the same folder gives the same tar.
    """
    root = Path(template_dir)
    if not root.is_dir():
        raise IbmCloudConfigError(
            f"template_dir {str(root)!r} is not a directory; point it at the Terraform folder"
        )
    files: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in TAR_EXCLUDED_DIRS)
        for name in sorted(filenames):
            if name.endswith(TAR_EXCLUDED_SUFFIXES) or name.startswith(".terraform.tfstate"):
                continue
            path = Path(dirpath) / name
            if not path.exists():  # a dangling symlink
                raise IbmCloudConfigError(
                    f"template file {str(path)!r} is a broken symlink; fix or remove it"
                )
            files.append((path, path.relative_to(root).as_posix()))
    if not any(arc.endswith(".tf") for _, arc in files):
        raise IbmCloudConfigError(f"template_dir {str(root)!r} holds no .tf file")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", dereference=True) as tar:
        for path, arcname in files:
            info = tar.gettarinfo(str(path), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def to_hcl_value(value: Any) -> tuple[str, str | None]:
    """Render a Python value as a Schematics variable ``value`` string plus a Terraform type."""
    if isinstance(value, bool):
        return ("true" if value else "false"), "bool"
    if isinstance(value, (int, float)):
        return json.dumps(value), "number"
    if isinstance(value, str):
        return value, "string"
    if isinstance(value, Mapping):
        return json.dumps(dict(value)), None
    if isinstance(value, Iterable):
        return json.dumps(list(value)), None
    raise IbmCloudConfigError(f"cannot pass a {type(value).__name__} as a Terraform variable")


def build_variablestore(
    variables: Mapping[str, Any] | None, secure_variables: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Schematics ``variablestore`` entries; ``secure_variables`` get ``secure: True``.

    ``None`` values are left out, so Terraform uses the variable's default.
    """
    store: list[dict[str, Any]] = []
    variables = dict(variables or {})
    secure_variables = dict(secure_variables or {})
    both = sorted(set(variables) & set(secure_variables))
    if both:
        raise IbmCloudConfigError(f"variables {both} are given both as plain and as secure variables")
    for name, value in variables.items():
        if value is None:
            continue
        text, tf_type = to_hcl_value(value)
        entry: dict[str, Any] = {"name": name, "value": text}
        if tf_type:
            entry["type"] = tf_type
        store.append(entry)
    for name, value in secure_variables.items():
        store.append(
            {"name": name, "value": "" if value is None else str(value), "type": "string", "secure": True}
        )
    return store


class SchematicsHook(IbmCloudBaseHook):
    """Talks to IBM Cloud Schematics v1 through ``ibm_schematics.SchematicsV1``.

    * Authentication: ``IAMAuthenticator(apikey, url=iam_url, client_id='bx', client_secret='bx')``; a
      fresh IAM refresh token is requested for every job command, so long runs never send a stale one.
    * Retries: 429, 5xx and transport errors back off (``Retry-After`` honoured, capped in time and
      tries); 409 "workspace locked" is waited out for at most ``retry_policy.lock_wait_s`` where it makes
      sense. A job command retried after a 5xx first looks for a job the server started anyway, so
      a flaky response never starts two jobs.
    * Idempotence: workspaces are found by name before one is created; deleting or stopping something
      that is already gone (404) counts as success.

    :param ibm_conn_id: the ``ibm_cloud_default``-style connection.
    :param retry_policy: overrides :class:`~ibm_cloud_airflow.hooks.base.RetryPolicy`.
    :param request_timeout: per-request HTTP timeout in seconds.
    :param default_tier: the budget tier of requests that name none (see ``hooks/budget.py``).
    """

    hook_name = "IBM Cloud"

    def __init__(
        self,
        ibm_conn_id: str = IbmCloudBaseHook.default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        request_timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        default_tier: str = WORK,
    ) -> None:
        super().__init__(ibm_conn_id, retry_policy=retry_policy, request_timeout=request_timeout, sleep=sleep)
        self.default_tier = default_tier
        self._prepaid_slots = 0  # budget slots taken by the caller: see with_prepaid_slot

    # -- clients -----------------------------------------------------------------------------
    @cached_property
    def client(self) -> Any:
        from ibm_schematics.schematics_v1 import SchematicsV1

        client = SchematicsV1(authenticator=self.authenticator)
        client.set_service_url(self.config.schematics_url)
        return client

    @cached_property
    def budget(self) -> RequestBudget | None:
        """The machine-wide budget of requests for this API key; None when turned off."""
        cfg = self.config
        if not cfg.rate_limit_per_minute:
            return None
        spec = BudgetSpec.for_api_key(
            cfg.api_key,
            cfg.schematics_url,
            cfg.rate_limit_per_minute,
            cfg.rate_limit_window_s,
            Path(cfg.budget_dir) if cfg.budget_dir else None,
        )
        return request_budget(spec)

    def with_prepaid_slot(self) -> SchematicsHook:
        """A copy of this hook whose first metered request uses a budget slot already taken.

        For :class:`SchematicsAsyncHook`, which waits for the slot on the event loop
        (``acquire_async``) and then calls the copy in a worker thread: waiting inside the thread
        would tie up the event loop's small thread pool, which every other trigger needs. The copy
        shares the connection, client and budget; its later requests wait for their own slots, and a
        slot that no request used goes with the copy.
        """
        prepaid = copy.copy(self)
        prepaid._prepaid_slots = 1
        return prepaid

    def _take_budget(self, tier: str) -> None:
        """Take a budget slot of ``tier`` for the request about to be sent (or use the prepaid one)."""
        if self._prepaid_slots:
            self._prepaid_slots -= 1
        elif self.budget is not None:
            self.budget.acquire(tier)

    def get_conn(self) -> Any:
        return self.client

    def _call(
        self,
        what: str,
        func: Callable[[], Any],
        *,
        wait_on_lock: bool = False,
        recover: Callable[[BaseException], Any] | None = None,
        tier: str | None = None,
        metered: bool = True,
    ) -> Any:
        """One Schematics request with retries; each attempt first takes a slot of ``tier``."""
        tier = tier or self.default_tier
        return super()._call(
            what,
            func,
            wait_on_lock=wait_on_lock,
            recover=recover,
            before_attempt=(lambda: self._take_budget(tier)) if metered else None,
        )

    def _result(
        self,
        what: str,
        method: Callable[..., Any],
        *args: Any,
        wait_on_lock: bool = False,
        tier: str | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.setdefault("timeout", self.request_timeout)
        return self._call(
            what, lambda: method(*args, **kwargs).get_result(), wait_on_lock=wait_on_lock, tier=tier
        )

    def refresh_token(self) -> str:
        """A fresh IAM refresh token (the ``refresh_token`` header of job commands)."""

        def fetch() -> str:
            token = self.authenticator.token_manager.request_token()
            return token["refresh_token"]

        value = self._call("IAM token request", fetch, metered=False)  # IAM, not Schematics
        if not value or value == "not_supported":
            raise IbmCloudPermanentError(
                "IAM returned no usable refresh token; the IAM endpoint must issue refresh tokens for "
                f"client 'bx' (check extra 'iam_url' of connection '{self.ibm_conn_id}')"
            )
        return value

    # -- workspaces --------------------------------------------------------------------------
    def list_workspaces(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset, limit = 0, 100
        while True:
            page = (
                self._result("list workspaces", self.client.list_workspaces, offset=offset, limit=limit) or {}
            )
            items = page.get("workspaces") or []
            out.extend(items)
            count = page.get("count")
            offset += len(items)
            if not items or len(items) < limit or (isinstance(count, int) and offset >= count):
                return out

    def find_workspace_by_name(self, name: str) -> dict[str, Any] | None:
        """The workspace called ``name`` (the newest one if, unexpectedly, there are several)."""
        matches = [w for w in self.list_workspaces() if w.get("name") == name]
        if not matches:
            return None
        if len(matches) > 1:
            self.log.warning("%d workspaces are named %r; using the newest", len(matches), name)
        matches.sort(key=lambda w: w.get("created_at") or "", reverse=True)
        return matches[0]

    def resolve_workspace(
        self, workspace_id: str | None, workspace_name: str | None, *, skip_draft: bool = False
    ) -> str | None:
        """The workspace's id: ``workspace_id`` as it is, else the one named ``workspace_name``.

        An id costs no request (a deleted workspace answers the next call with 404). By name, the
        newest match; ``skip_draft`` treats a ``DRAFT`` workspace (one that never received a
        template, so it has nothing to plan or destroy) as none. None when there is no such workspace.
        """
        if workspace_id:
            return workspace_id
        if not workspace_name:
            return None
        found = self.find_workspace_by_name(workspace_name)
        if not found:
            return None
        if skip_draft:
            try:
                workspace = self.get_workspace(found["id"])
            except IbmCloudNotFoundError:
                return None
            if str(workspace.get("status") or "").upper() == "DRAFT":
                self.log.info("Workspace %s never received a template (DRAFT)", found["id"])
                return None
        return found["id"]

    def get_workspace(self, workspace_id: str, *, tier: str | None = None) -> dict[str, Any]:
        return self._result(
            f"get workspace {workspace_id}", self.client.get_workspace, workspace_id, tier=tier
        )

    @staticmethod
    def template_id(workspace: Mapping[str, Any]) -> str:
        templates = workspace.get("template_data") or []
        if not templates or not templates[0].get("id"):
            raise IbmCloudApiError(f"workspace {workspace.get('id')} has no template_data id")
        return templates[0]["id"]

    def create_workspace(
        self,
        name: str,
        template_dir: str | os.PathLike[str],
        variables: Mapping[str, Any] | None = None,
        secure_variables: Mapping[str, str] | None = None,
        tags: list[str] | None = None,
        location: str | None = None,
        resource_group: str | None = None,
        terraform_version: str = "terraform_v1.13",
        description: str | None = None,
        ready_timeout: float = 900.0,
        reuse_existing: bool = True,
    ) -> dict[str, Any]:
        """Create the workspace ``name`` (or reuse the one that exists), upload the template, set variables.

        ``reuse_existing=False`` skips the look-up by name (one request less) where no earlier
        attempt can have created the workspace, e.g. on a task's first try.
        Returns the workspace once it is ready for a plan (``INACTIVE``/``ACTIVE``/...).
        """
        tar_bytes = build_template_tar(template_dir)
        store = build_variablestore(variables, secure_variables)
        workspace = self.find_workspace_by_name(name) if reuse_existing else None
        created = False
        if workspace is not None:
            self.log.info("Workspace %r exists (%s); reusing it", name, workspace["id"])
        else:
            body: dict[str, Any] = {
                "name": name,
                "type": [terraform_version],
                "location": location or self.config.region,
                "description": description or f"Created by Airflow ({name})",
                "tags": list(tags or []),
                "template_data": [{"folder": ".", "type": terraform_version, "variablestore": store}],
            }
            rg = resource_group or self.config.resource_group
            if rg:
                body["resource_group"] = rg

            def recover(_exc: BaseException) -> dict[str, Any] | None:
                return self.find_workspace_by_name(name)

            workspace = self._call(
                f"create workspace {name!r}",
                lambda: self.client.create_workspace(**body, timeout=self.request_timeout).get_result(),
                recover=recover,
            )
            self.log.info("Created workspace %r: %s", name, workspace["id"])
            created = True
        workspace_id = workspace["id"]
        template_id = self.template_id(workspace)
        self.upload_template(workspace_id, tar_bytes, template_id=template_id)
        if not created:  # a new workspace got its variables in the create call
            self.update_variables(workspace_id, variables, secure_variables, template_id=template_id)
        return self.wait_for_workspace_ready(workspace_id, timeout=ready_timeout)

    def upload_template(self, workspace_id: str, tar_bytes: bytes, template_id: str | None = None) -> None:
        """Upload a template tar (see :func:`build_template_tar`) to the workspace."""
        t_id = template_id or self.template_id(self.get_workspace(workspace_id))
        self.log.info("Uploading template (%d bytes) to workspace %s", len(tar_bytes), workspace_id)
        self._call(
            f"upload template to workspace {workspace_id}",
            lambda: self.client.template_repo_upload(
                workspace_id,
                t_id,
                file=io.BytesIO(tar_bytes),
                file_content_type="application/x-tar",
                timeout=max(self.request_timeout, 120),
            ).get_result(),
            wait_on_lock=True,
        )

    def update_variables(
        self,
        workspace_id: str,
        variables: Mapping[str, Any] | None,
        secure_variables: Mapping[str, str] | None = None,
        template_id: str | None = None,
    ) -> None:
        """Replace the workspace's variables (``replace_workspace_inputs``); secure ones are masked by IBM."""
        store = build_variablestore(variables, secure_variables)
        t_id = template_id or self.template_id(self.get_workspace(workspace_id))
        self._call(
            f"set variables of workspace {workspace_id}",
            lambda: self.client.replace_workspace_inputs(
                workspace_id, t_id, variablestore=store, timeout=self.request_timeout
            ).get_result(),
            wait_on_lock=True,
        )

    def set_workspace_tags(self, workspace_id: str, tags: list[str]) -> dict[str, Any]:
        return self._result(
            f"update tags of workspace {workspace_id}",
            self.client.update_workspace,
            workspace_id,
            tags=list(tags),
            wait_on_lock=True,
        )

    def wait_for_workspace_ready(
        self, workspace_id: str, *, timeout: float = 900.0, poll: float = 5.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            workspace = self.get_workspace(workspace_id, tier=POLL)
            status = str(workspace.get("status") or "").upper()
            locked = bool((workspace.get("workspace_status") or {}).get("locked"))
            if status == "TEMPLATE_ERROR":
                reason = workspace.get("failure_reason") or (workspace.get("workspace_status_msg") or {}).get(
                    "status_msg"
                )
                raise IbmCloudPermanentError(
                    f"workspace {workspace_id} rejected the template (TEMPLATE_ERROR: {reason}); fix the "
                    "Terraform files"
                )
            if status in READY_WORKSPACE_STATUSES and not locked:
                return workspace
            if time.monotonic() > deadline:
                raise IbmCloudApiError(
                    f"workspace {workspace_id} not ready after {timeout:.0f} s "
                    f"(status {status}, locked={locked})"
                )
            self._sleep(poll)

    def delete_workspace(self, workspace_id: str, destroy_resources: bool = False) -> bool:
        """Delete the workspace; ``False`` when it was already gone."""
        try:
            self._call(
                f"delete workspace {workspace_id}",
                lambda: self.client.delete_workspace(
                    self.refresh_token(),
                    workspace_id,
                    destroy_resources="true" if destroy_resources else "false",
                    timeout=self.request_timeout,
                ).get_result(),
                wait_on_lock=True,
            )
        except IbmCloudNotFoundError:
            self.log.info("Workspace %s is already gone", workspace_id)
            return False
        self.log.info("Deleted workspace %s (destroy_resources=%s)", workspace_id, destroy_resources)
        return True

    # -- jobs --------------------------------------------------------------------------------
    def list_activities(self, workspace_id: str) -> list[dict[str, Any]]:
        result = self._result(
            f"list jobs of workspace {workspace_id}", self.client.list_workspace_activities, workspace_id
        )
        return list((result or {}).get("actions") or [])

    def _submit(
        self,
        command: str,
        workspace_id: str,
        send: Callable[[str], Any],
        tier: str | None = None,
        wait_on_lock: bool = True,
    ) -> str:
        """Start a job; on a 5xx/transport error look for the job the server may have started anyway.

        The look-up happens only after such an error (each Schematics call counts against a rate
        limit): a job of this command that started since just before the first attempt is ours.
        """
        started_after = datetime.now(UTC) - timedelta(seconds=JOB_CLOCK_SKEW_S)

        def recover(_exc: BaseException) -> str | None:
            for act in self.list_activities(workspace_id):
                name = str(act.get("name") or "").upper()
                performed = _parse_time(act.get("performed_at"))
                if name.endswith(command.upper()) and performed is not None and performed >= started_after:
                    return act["action_id"]
            return None

        def do() -> str:
            result = send(self.refresh_token()).get_result() or {}
            activity_id = result.get("activityid") or result.get("action_id")
            if not activity_id:
                raise IbmCloudApiError(f"{command} of workspace {workspace_id}: no activityid in {result!r}")
            return activity_id

        activity_id = self._call(
            f"{command} workspace {workspace_id}", do, wait_on_lock=wait_on_lock, recover=recover, tier=tier
        )
        self.log.info("Schematics %s job %s started on workspace %s", command, activity_id, workspace_id)
        return activity_id

    def plan(self, workspace_id: str, *, wait_on_lock: bool = True) -> str:
        return self._submit(
            "plan",
            workspace_id,
            lambda rt: self.client.plan_workspace_command(workspace_id, rt, timeout=self.request_timeout),
            wait_on_lock=wait_on_lock,
        )

    def apply(self, workspace_id: str, *, wait_on_lock: bool = True) -> str:
        return self._submit(
            "apply",
            workspace_id,
            lambda rt: self.client.apply_workspace_command(workspace_id, rt, timeout=self.request_timeout),
            wait_on_lock=wait_on_lock,
        )

    def destroy(self, workspace_id: str, *, wait_on_lock: bool = True) -> str:
        return self._submit(
            "destroy",
            workspace_id,
            lambda rt: self.client.destroy_workspace_command(workspace_id, rt, timeout=self.request_timeout),
            tier=TEARDOWN,
            wait_on_lock=wait_on_lock,
        )

    def refresh(self, workspace_id: str, *, wait_on_lock: bool = True) -> str:
        return self._submit(
            "refresh",
            workspace_id,
            lambda rt: self.client.refresh_workspace_command(workspace_id, rt, timeout=self.request_timeout),
            wait_on_lock=wait_on_lock,
        )

    def run_command(self, command: str, workspace_id: str, *, wait_on_lock: bool = True) -> str:
        """Submit ``command``; with ``wait_on_lock=False`` a locked workspace raises (HTTP 409) at once."""
        if command not in ("plan", "apply", "destroy", "refresh"):
            raise ValueError(f"unknown Schematics command {command!r}")
        return getattr(self, command)(workspace_id, wait_on_lock=wait_on_lock)

    def running_job(self, workspace_id: str, command: str) -> str | None:
        """The id of a ``command`` job still running on the workspace, if there is one."""
        for act in self.list_activities(workspace_id):
            name = str(act.get("name") or "").upper()
            if name.endswith(command.upper()) and str(act.get("status") or "").upper() not in (
                TERMINAL_JOB_STATUSES
            ):
                return act["action_id"]
        return None

    def get_activity(self, workspace_id: str, activity_id: str) -> dict[str, Any]:
        return self._result(
            f"get job {activity_id} of workspace {workspace_id}",
            self.client.get_workspace_activity,
            workspace_id,
            activity_id,
            tier=POLL,
        )

    def stop_activity(self, workspace_id: str, activity_id: str, *, timeout: float | None = None) -> bool:
        """Ask Schematics to stop a job. Returns ``False`` if the job or workspace is gone.

        With ``timeout`` set, one quick attempt is made (for ``on_kill``), without retries.
        """
        what = f"stop job {activity_id} of workspace {workspace_id}"
        try:
            if timeout is not None:
                try:
                    self._take_budget(TEARDOWN)
                    self.client.delete_workspace_activity(workspace_id, activity_id, timeout=timeout)
                except Exception as exc:
                    raise map_api_error(exc, what, self.ibm_conn_id) from exc
            else:
                self._result(
                    what, self.client.delete_workspace_activity, workspace_id, activity_id, tier=TEARDOWN
                )
        except IbmCloudNotFoundError:
            return False
        self.log.info("Requested stop of Schematics job %s", activity_id)
        return True

    def get_activity_log(
        self, workspace_id: str, activity_id: str, activity: Mapping[str, Any] | None = None
    ) -> str:
        """The job's Terraform log as text.

        Follows ``templates[].log_url`` of ``activity`` (the job as last read) when it has them: one
        request per template instead of two (the ``/logs`` look-up counts against the rate limit).
        """
        templates = list((activity or {}).get("templates") or [])
        if not templates or not all(t.get("log_url") for t in templates):
            logs = (
                self._result(
                    f"get log urls of job {activity_id}",
                    self.client.get_workspace_activity_logs,
                    workspace_id,
                    activity_id,
                    tier=POLL,
                )
                or {}
            )
            templates = logs.get("templates") or []
        texts = []
        for template in templates:
            url = template.get("log_url")
            if url:
                texts.append(self._fetch_text(url, what=f"read log of job {activity_id}"))
            elif template.get("template_id"):
                texts.append(
                    self._call(
                        f"read log of job {activity_id}",
                        lambda t=template: _as_text(
                            self.client.get_template_activity_log(
                                workspace_id, t["template_id"], activity_id, timeout=self.request_timeout
                            ).get_result()
                        ),
                        tier=POLL,
                    )
                )
        return "\n".join(t.rstrip("\n") for t in texts if t)

    def _fetch_text(self, url: str, *, what: str) -> str:
        from ibm_cloud_sdk_core import ApiException

        if not url.startswith(("http://", "https://")):
            url = self.config.schematics_url + "/" + url.lstrip("/")

        def get() -> str:
            request: dict[str, Any] = {"method": "GET", "url": url, "headers": {}}
            self.authenticator.authenticate(request)
            resp = self.client.http_client.get(url, headers=request["headers"], timeout=self.request_timeout)
            if resp.status_code >= 400:
                raise ApiException(resp.status_code, http_response=resp)
            return resp.text

        return self._call(what, get, tier=POLL)

    def get_outputs(self, workspace_id: str, *, include_sensitive: bool = False) -> dict[str, Any]:
        """Terraform outputs as ``name -> value``; sensitive ones are replaced by ``"<sensitive>"``."""
        result = self._result(
            f"get outputs of workspace {workspace_id}", self.client.get_workspace_outputs, workspace_id
        )
        outputs: dict[str, Any] = {}
        for template in result or []:
            for block in template.get("output_values") or []:
                for name, spec in (block or {}).items():
                    if isinstance(spec, Mapping) and "value" in spec:
                        sensitive = bool(spec.get("sensitive"))
                        outputs[name] = spec["value"] if include_sensitive or not sensitive else "<sensitive>"
                    else:
                        outputs[name] = spec
        return outputs


def _as_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    text = getattr(result, "text", None)
    return text if isinstance(text, str) else json.dumps(result)


class SchematicsAsyncHook:
    """Async twin for triggers: runs the sync hook in worker threads so the event loop never blocks.

    The connection lookup also happens in a thread (it may talk to the supervisor synchronously).
    """

    def __init__(self, ibm_conn_id: str = SchematicsHook.default_conn_name, **hook_kwargs: Any) -> None:
        self.ibm_conn_id = ibm_conn_id
        self._hook_kwargs = hook_kwargs
        self._hook: SchematicsHook | None = None

    async def _run(self, name: str, *args: Any, tier: str = POLL, **kwargs: Any) -> Any:
        """Wait for the request's budget slot here, on the event loop, then call in a thread.

        Waiting inside the thread would tie up the loop's small thread pool, which every other
        trigger in the triggerer (the COS sensors too) needs. So the call runs in the sync hook's
        :meth:`~SchematicsHook.with_prepaid_slot`: its first request uses the slot taken here.
        """
        from asgiref.sync import sync_to_async

        hook = await sync_to_async(self._get_hook, thread_sensitive=False)()
        method = getattr(hook, name)
        if hook.budget is None:
            return await sync_to_async(method, thread_sensitive=False)(*args, **kwargs)
        await hook.budget.acquire_async(tier)

        prepaid = getattr(hook.with_prepaid_slot(), name)
        return await sync_to_async(prepaid, thread_sensitive=False)(*args, **kwargs)

    def _get_hook(self) -> SchematicsHook:
        if self._hook is None:
            hook = SchematicsHook(self.ibm_conn_id, **self._hook_kwargs)
            # Read the connection and build the client here, in this thread, once: the prepaid
            # copies share them.
            hook.budget  # noqa: B018
            hook.client  # noqa: B018
            self._hook = hook
        return self._hook

    async def get_activity(self, workspace_id: str, activity_id: str) -> dict[str, Any]:
        return await self._run("get_activity", workspace_id, activity_id)

    async def list_activities(self, workspace_id: str) -> list[dict[str, Any]]:
        return await self._run("list_activities", workspace_id, tier=WORK)

    async def get_activity_log(
        self, workspace_id: str, activity_id: str, activity: Mapping[str, Any] | None = None
    ) -> str:
        return await self._run("get_activity_log", workspace_id, activity_id, activity)

    async def get_outputs(self, workspace_id: str) -> dict[str, Any]:
        return await self._run("get_outputs", workspace_id, tier=WORK)

    async def run_command(self, command: str, workspace_id: str, *, wait_on_lock: bool = True) -> str:
        tier = TEARDOWN if command == "destroy" else WORK
        return await self._run("run_command", command, workspace_id, wait_on_lock=wait_on_lock, tier=tier)

    async def resolve_workspace(
        self, workspace_id: str | None, workspace_name: str | None, *, skip_draft: bool = False
    ) -> str | None:
        """:meth:`SchematicsHook.resolve_workspace`; an id needs no request, so no thread either."""
        if workspace_id:
            return workspace_id
        return await self._run(
            "resolve_workspace", workspace_id, workspace_name, skip_draft=skip_draft, tier=WORK
        )

    async def running_job(self, workspace_id: str, command: str) -> str | None:
        return await self._run("running_job", workspace_id, command, tier=WORK)

    async def stop_activity(
        self, workspace_id: str, activity_id: str, *, timeout: float | None = None
    ) -> bool:
        return await self._run("stop_activity", workspace_id, activity_id, timeout=timeout, tier=TEARDOWN)


def _parse_time(value: Any) -> datetime | None:
    """A Schematics timestamp (RFC 3339, ``Z`` or offset) as an aware datetime; None if absent."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def job_summary(activity: Mapping[str, Any]) -> dict[str, Any]:
    """What a finished job did, as Schematics summarises it (for run reports)."""
    template = (activity.get("templates") or [{}])[0] or {}
    summary = template.get("log_summary") or {}
    return {
        "activity_id": activity.get("action_id"),
        "status": activity.get("status"),
        "performed_at": activity.get("performed_at"),
        # when Terraform ran (the run report prices the servers' lifetime from these)
        "started_at": template.get("start_time"),
        "ended_at": template.get("end_time"),
        **{k: summary.get(k) for k in ("resources_added", "resources_modified", "resources_destroyed")},
    }
