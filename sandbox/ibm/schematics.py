"""Schematics v1 emulator: workspaces, tar templates, inputs, jobs (plan/apply/destroy/refresh), logs.

Follows the checked facts in the team reference (Schematics v1 API as ``ibm-schematics`` 1.1.0 calls
it): status codes (201 create, 202 + ``{"activityid"}`` for jobs, 200 ``""`` for delete), the
``refresh_token`` header, workspace/activity status strings, 409 while a workspace is locked, the
per-user rate limit (429 + ``Retry-After``) and the error body shape. Jobs run in background
threads that call the Terraform runner (``sandbox/terraform/engine.py``).
"""

from __future__ import annotations

import collections
import io
import json
import math
import re
import secrets
import shutil
import tarfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Request, Response

from sandbox.faults import FaultSet
from sandbox.ibm.errors import json_response, now_iso, schematics_error
from sandbox.ibm.iam import TokenAuthority
from sandbox.ibm.template_files import removal_reason
from sandbox.ibm.wsgi import ApiError, Rule, ServiceApp
from sandbox.inventory import Inventory
from sandbox.terraform import TerraformRun, declared_variables

DEFAULT_TF_TYPE = "terraform_v1.13"
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")
RUNNABLE_STATUSES = ("INACTIVE", "ACTIVE", "FAILED", "STOPPED")
SECRET_PREFIX = "$SCHEMATICSSECRET$"  # noqa: S105 - a marker, not a password
QUEUE_DELAY_S = 0.05  # a job sits in CREATED briefly, as in the real fair-share queue
LOCK_MESSAGE = (
    "The Job was temporarily locked by {by} at {at}. "
    "Please wait until any current Job execution have completed."
)


def _log_ts() -> str:
    return datetime.now(UTC).strftime("%Y/%m/%d %H:%M:%S")


@dataclass
class Job:
    activity: dict[str, Any]
    command: str  # plan | apply | destroy | refresh | delete
    stop: threading.Event = field(default_factory=threading.Event)
    log_lines: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None


class RateLimiter:
    """Sliding one-window counter per key (the user's IAM id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def hit(self, key: str, limit: int, window_s: float) -> int | None:
        """Record a request; return None if allowed, else the seconds to wait (request not counted)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            if len(hits) >= limit:
                return max(1, math.ceil(hits[0] + window_s - now))
            hits.append(now)
            return None

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


ROUTES = [
    Rule("/v1/version", endpoint="version", methods=["GET"]),
    Rule("/v1/workspaces", endpoint="list_workspaces", methods=["GET"]),
    Rule("/v1/workspaces", endpoint="create_workspace", methods=["POST"]),
    Rule("/v1/workspaces/<w_id>", endpoint="get_workspace", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>", endpoint="update_workspace", methods=["PUT", "PATCH"]),
    Rule("/v1/workspaces/<w_id>", endpoint="delete_workspace", methods=["DELETE"]),
    Rule(
        "/v1/workspaces/<w_id>/template_data/<t_id>/template_repo_upload",
        endpoint="upload",
        methods=["PUT"],
    ),
    Rule("/v1/workspaces/<w_id>/template_data/<t_id>/values", endpoint="get_inputs", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/template_data/<t_id>/values", endpoint="put_inputs", methods=["PUT"]),
    Rule(
        "/v1/workspaces/<w_id>/template_data/<t_id>/values_metadata",
        endpoint="inputs_metadata",
        methods=["GET"],
    ),
    Rule("/v1/workspaces/<w_id>/templates/values", endpoint="all_inputs", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/output_values", endpoint="outputs", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/resources", endpoint="resources", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/state_stores", endpoint="state_stores", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/runtime_data/<t_id>/state_store", endpoint="state", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/log_stores", endpoint="log_stores", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/runtime_data/<t_id>/log_store", endpoint="template_log", methods=["GET"]),
    Rule(
        "/v1/workspaces/<w_id>/runtime_data/<t_id>/log_store/actions/<a_id>",
        endpoint="activity_log",
        methods=["GET"],
    ),
    Rule("/v1/workspaces/<w_id>/actions", endpoint="list_activities", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/actions/<a_id>", endpoint="get_activity", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/actions/<a_id>", endpoint="stop_activity", methods=["DELETE"]),
    Rule("/v1/workspaces/<w_id>/actions/<a_id>/logs", endpoint="activity_logs", methods=["GET"]),
    Rule("/v1/workspaces/<w_id>/plan", endpoint="plan", methods=["POST"]),
    Rule("/v1/workspaces/<w_id>/apply", endpoint="apply", methods=["PUT"]),
    Rule("/v1/workspaces/<w_id>/destroy", endpoint="destroy", methods=["PUT"]),
    Rule("/v1/workspaces/<w_id>/refresh", endpoint="refresh", methods=["PUT"]),
]


class SchematicsService(ServiceApp):
    """State and WSGI app of the Schematics emulator."""

    service = "schematics"
    rules = ROUTES
    auth = True
    strict_slashes = False
    merge_slashes = False
    unauthorized = (None, "Unauthorized: {err}")
    invalid_json = (None, "The request body is not valid JSON: {err}")

    def __init__(
        self,
        *,
        inventory: Inventory,
        faults: FaultSet,
        authority: TokenAuthority,
        engine: Any,
        state_dir: Path,
        rate_limit_per_min: int | None,
        region: str,
    ) -> None:
        self.inventory = inventory
        self.faults = faults
        self.authority = authority
        self.engine = engine
        self.state_dir = state_dir
        self.rate_limit_per_min = rate_limit_per_min
        self.region = region
        self._lock = threading.RLock()
        self._workspaces: dict[str, dict[str, Any]] = {}
        self._limiter = RateLimiter()
        self._api_errors_seen = 0
        self._api_errors_failed = 0
        self._closing = threading.Event()

    # -- plumbing ---------------------------------------------------------------------------
    def reset_fault_state(self) -> None:
        """Called when faults change: counters of the fault that fails every other request restart."""
        with self._lock:
            self._api_errors_seen = 0
            self._api_errors_failed = 0
        self._limiter.reset()

    def error(self, err: ApiError) -> Response:
        return schematics_error(err.status, err.message, messageid=err.code, headers=err.headers)

    def route_error(self, request: Request, err: HTTPException) -> Response:
        if isinstance(err, MethodNotAllowed):
            allow = ", ".join(sorted(err.valid_methods or []))
            message = f"Method {request.method} not allowed on {request.path}"
            return self.error(ApiError(405, message, headers={"Allow": allow}))
        return self.error(ApiError(err.code or 404, f"No such API path: {request.path}"))

    def before(self, request: Request, endpoint: str, claims: dict[str, Any], args: dict[str, Any]) -> None:
        """The per-user rate limit (429), then the ``api_errors`` fault."""
        retry_after = self._rate_limited(claims["iam_id"])
        if retry_after is not None:
            raise ApiError(
                429,
                "Rate limit exceeded: Schematics accepts a limited number of requests per minute per user.",
                headers={"Retry-After": str(retry_after)},
            )
        self._injected_error()

    def _rate_limited(self, user: str) -> int | None:
        limit, window = self.rate_limit_per_min, 60.0
        if self.faults.active("rate_limited"):
            opts = self.faults.options("rate_limited")
            # A tight burst limit (5 per 10 s): every run meets 429s, yet a run still ends in minutes.
            limit, window = int(opts.get("limit", 5)), float(opts.get("window_s", 10))
        if not limit:
            return None
        return self._limiter.hit(user, limit, window)

    def _injected_error(self) -> None:
        """``api_errors``: every other Schematics request fails (first one included) until ``count``."""
        if not self.faults.active("api_errors"):
            return
        opts = self.faults.options("api_errors")
        codes = list(opts.get("codes", [503, 502, 500]))
        with self._lock:
            seen = self._api_errors_seen
            self._api_errors_seen += 1
            if seen % 2 or self._api_errors_failed >= int(opts.get("count", 3)):
                return
            code = codes[self._api_errors_failed % len(codes)]
            self._api_errors_failed += 1
        headers = {"Retry-After": "1"} if code == 503 else None
        raise ApiError(code, f"Injected fault api_errors: HTTP {code}", headers=headers)

    def _json_body(self, request: Request, *, required: bool = True) -> dict[str, Any]:
        if not request.get_data().strip():
            if required:
                raise ApiError(400, "The request body is missing.")
            return {}
        body = self.json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return body

    def _ws(self, w_id: str) -> dict[str, Any]:
        ws = self._workspaces.get(w_id)
        if ws is None:
            raise ApiError(404, f"Workspace {w_id} not found.")
        return ws

    def _template(self, ws: dict[str, Any], t_id: str) -> dict[str, Any]:
        for tpl in ws["templates"]:
            if tpl["id"] == t_id:
                return tpl
        raise ApiError(404, f"Template {t_id} not found in workspace {ws['id']}.")

    def _locked(self, ws: dict[str, Any]) -> bool:
        return ws["job"] is not None or time.time() < ws["locked_until"]

    def _check_unlocked(self, ws: dict[str, Any]) -> None:
        if self._locked(ws):
            st = ws["workspace_status"]
            raise ApiError(409, LOCK_MESSAGE.format(by=st["locked_by"], at=st["locked_time"]))
        if ws["workspace_status"]["frozen"]:
            raise ApiError(409, f"Workspace {ws['id']} is frozen.")

    def _refresh_token(self, request: Request) -> None:
        token = request.headers.get("refresh_token")
        if not token:
            raise ApiError(400, "The refresh_token header is missing.")
        if self.authority.refresh_identity(token) is None:
            raise ApiError(401, "The refresh_token header is not a valid IAM refresh token.")

    # -- rendering --------------------------------------------------------------------------
    def _mask(self, tpl: dict[str, Any], var: dict[str, Any]) -> str:
        masks = tpl["masks"]
        if var["name"] not in masks:
            masks[var["name"]] = SECRET_PREFIX + secrets.token_hex(24)
        return masks[var["name"]]

    def _public_vars(self, tpl: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for var in tpl["variablestore"]:
            item = dict(var)
            if var.get("secure"):
                item["value"] = self._mask(tpl, var)
            out.append(item)
        return out

    def _render(self, ws: dict[str, Any], base: str) -> dict[str, Any]:
        locked = self._locked(ws)
        st = dict(ws["workspace_status"])
        st["locked"] = locked
        if not locked:
            st.update(locked_by="", locked_time="0001-01-01T00:00:00Z")
        templates, runtime = [], []
        for tpl in ws["templates"]:
            prefix = f"{base}/v1/workspaces/{ws['id']}"
            templates.append(
                {
                    "id": tpl["id"],
                    "folder": tpl["folder"],
                    "compact": False,
                    "type": tpl["type"],
                    "values_url": f"{prefix}/template_data/{tpl['id']}/values",
                    "values": tpl["values"],
                    "values_metadata": self._values_metadata(tpl),
                    "variablestore": self._public_vars(tpl),
                    "env_values": tpl["env_values"],
                    "has_githubtoken": False,
                }
            )
            runtime.append(
                {
                    "id": tpl["id"],
                    "engine_name": "terraform",
                    "engine_version": tpl["type"].replace("terraform_", ""),
                    "engine_cmd": "terraform",
                    "state_store_url": f"{prefix}/runtime_data/{tpl['id']}/state_store",
                    "log_store_url": f"{prefix}/runtime_data/{tpl['id']}/log_store",
                }
            )
        last = ws["activities"][0] if ws["activities"] else None
        return {
            "id": ws["id"],
            "name": ws["name"],
            "crn": ws["crn"],
            "type": [ws["templates"][0]["type"]],
            "description": ws["description"],
            "resource_group": ws["resource_group"],
            "location": ws["location"],
            "tags": ws["tags"],
            "created_at": ws["created_at"],
            "created_by": ws["created_by"],
            "updated_at": ws["updated_at"],
            "updated_by": ws["updated_by"],
            "last_health_check_at": ws["updated_at"],
            "status": ws["status"],
            "failure_reason": ws["failure_reason"],
            "workspace_status_msg": dict(ws["workspace_status_msg"]),
            "workspace_status": st,
            "template_repo": dict(ws["template_repo"]),
            "template_data": templates,
            "runtime_data": runtime,
            "shared_data": {},
            "applied_shareddata_ids": [],
            "last_action_name": ws["last_action_name"],
            "last_activity_id": last["action_id"] if last else "",
            "last_job": {
                "job_id": last["action_id"] if last else "",
                "job_name": last["name"] if last else "",
                "job_status": last["status"] if last else "",
            },
        }

    @staticmethod
    def _values_metadata(tpl: dict[str, Any]) -> list[dict[str, Any]]:
        """Variables the uploaded template declares (``values_metadata``), read by the engine's parser."""
        if tpl.get("metadata_cache") is not None:
            return tpl["metadata_cache"]
        out: list[dict[str, Any]] = []
        if tpl.get("dir") and Path(tpl["dir"]).is_dir():
            try:
                for name, spec in declared_variables(Path(tpl["dir"]) / tpl["folder"]).items():
                    item = {
                        "name": name,
                        "type": spec["type"],
                        "description": spec.get("description") or "",
                        "secure": bool(spec.get("sensitive")),
                        "required": bool(spec.get("required")),
                    }
                    if "default" in spec:
                        item["default"] = spec["default"]
                    out.append(item)
            except Exception:  # metadata is informative only; a broken template fails at plan
                out = []
        tpl["metadata_cache"] = out
        return out

    # -- input validation -------------------------------------------------------------------
    @staticmethod
    def _parse_vars(items: Any) -> list[dict[str, Any]]:
        if items is None:
            return []
        if not isinstance(items, list):
            raise ApiError(400, "variablestore must be a list.")
        out = []
        for item in items:
            if not isinstance(item, dict) or not item.get("name"):
                raise ApiError(400, "Each variablestore entry needs a name.")
            value = item.get("value", "")
            if not isinstance(value, str):
                raise ApiError(400, f"Variable {item['name']}: value must be a string (HCL syntax).")
            out.append(
                {
                    "name": str(item["name"]),
                    "value": value,
                    "type": item.get("type"),
                    "secure": bool(item.get("secure", False)),
                    "description": item.get("description", ""),
                    "use_default": bool(item.get("use_default", False)),
                }
            )
        return out

    def _merge_vars(self, tpl: dict[str, Any], new: list[dict[str, Any]]) -> None:
        """Replace the variables; a secure value sent back masked keeps its stored clear value."""
        old = {v["name"]: v for v in tpl["variablestore"]}
        for var in new:
            prev = old.get(var["name"])
            if prev is not None and var["value"] == tpl["masks"].get(var["name"]):
                var["value"] = prev["value"]
            elif var["name"] in tpl["masks"]:
                del tpl["masks"][var["name"]]
        tpl["variablestore"] = new

    @staticmethod
    def _check_type(value: Any) -> str:
        if value is None:
            return DEFAULT_TF_TYPE
        if isinstance(value, list):
            if len(value) != 1:
                raise ApiError(400, "type must list exactly one Terraform version.")
            value = value[0]
        if not isinstance(value, str) or not re.fullmatch(r"terraform_v\d+\.\d+(\.\d+)?", value):
            raise ApiError(400, f"Unsupported template type {value!r} (expected e.g. {DEFAULT_TF_TYPE}).")
        return value

    def _new_template(self, spec: dict[str, Any], default_type: str) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ApiError(400, "template_data entries must be objects.")
        return {
            "id": f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(1)}",
            "folder": spec.get("folder") or ".",
            "type": self._check_type(spec.get("type")) if spec.get("type") else default_type,
            "variablestore": self._parse_vars(spec.get("variablestore")),
            "env_values": spec.get("env_values") or [],
            "values": spec.get("values") or "",
            "masks": {},
            "dir": None,
            "metadata_cache": None,
            "state": {},
            "outputs": {},
        }

    # -- workspaces -------------------------------------------------------------------------
    def ep_version(self, request: Request, claims: dict[str, Any]) -> Response:
        return json_response({"commitsha": "sandbox", "builddate": "2026-12-01", "buildno": "1"})

    def ep_list_workspaces(self, request: Request, claims: dict[str, Any]) -> Response:
        offset = int(request.args.get("offset", 0) or 0)
        limit = int(request.args.get("limit", 100) or 100)
        with self._lock:
            items = sorted(self._workspaces.values(), key=lambda w: w["created_at"], reverse=True)
            page = [self._render(w, request.host_url.rstrip("/")) for w in items[offset : offset + limit]]
        return json_response({"offset": offset, "limit": limit, "count": len(items), "workspaces": page})

    def ep_create_workspace(self, request: Request, claims: dict[str, Any]) -> Response:
        body = self._json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "The workspace name is missing.")
        location = body.get("location") or self.region
        if location != self.region:
            raise ApiError(400, "Incorrect Location Input.", code="M1097")
        tf_type = self._check_type(body.get("type"))
        specs = body.get("template_data") or [{}]
        if not isinstance(specs, list):
            raise ApiError(400, "template_data must be a list.")
        templates = [self._new_template(spec, tf_type) for spec in specs]
        repo = body.get("template_repo") or {}
        safe = re.sub(r"[^A-Za-z0-9_-]", "-", name)
        w_id = f"{self.region}.workspace.{safe}.{secrets.token_hex(4)}"
        now, user = now_iso(), claims.get("email") or claims["sub"]
        ws = {
            "id": w_id,
            "name": name,
            "crn": f"crn:v1:bluemix:public:schematics:{self.region}:a/{self.inventory.account_id}:"
            f"{uuid.uuid4()}:workspace:{w_id}",
            "description": body.get("description", ""),
            "resource_group": body.get("resource_group", "Default"),
            "location": location,
            "tags": list(body.get("tags") or []),
            "created_at": now,
            "created_by": user,
            "updated_at": now,
            "updated_by": user,
            "status": "DRAFT",
            "failure_reason": "",
            "workspace_status_msg": {"status_code": "", "status_msg": ""},
            "workspace_status": {
                "frozen": bool((body.get("workspace_status") or {}).get("frozen", False)),
                "frozen_at": None,
                "frozen_by": None,
                "locked": False,
                "locked_by": "",
                "locked_time": "0001-01-01T00:00:00Z",
            },
            "template_repo": {**repo, "has_uploadedgitrepotar": False},
            "templates": templates,
            "activities": [],
            "job": None,
            "locked_until": 0.0,
            "last_action_name": "WORKSPACE_CREATE",
        }
        with self._lock:
            self._workspaces[w_id] = ws
            return json_response(self._render(ws, request.host_url.rstrip("/")), 201)

    def ep_get_workspace(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        with self._lock:
            return json_response(self._render(self._ws(w_id), request.host_url.rstrip("/")))

    def ep_update_workspace(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        body = self._json_body(request)
        with self._lock:
            ws = self._ws(w_id)
            frozen = (body.get("workspace_status") or {}).get("frozen")
            if frozen is None:
                self._check_unlocked(ws)
            for key in ("name", "description", "resource_group"):
                if key in body and body[key] is not None:
                    ws[key] = body[key]
            if body.get("tags") is not None:
                ws["tags"] = list(body["tags"])
            if body.get("type") is not None:
                tf_type = self._check_type(body["type"])
                for tpl in ws["templates"]:
                    tpl["type"] = tf_type
            if body.get("template_repo") is not None:
                ws["template_repo"].update(body["template_repo"])
            for spec in body.get("template_data") or []:
                if not isinstance(spec, dict):
                    raise ApiError(400, "template_data entries must be objects.")
                tpl = self._template(ws, spec["id"]) if spec.get("id") else ws["templates"][0]
                if "variablestore" in spec:
                    self._merge_vars(tpl, self._parse_vars(spec["variablestore"]))
                if spec.get("folder"):
                    tpl["folder"] = spec["folder"]
                if spec.get("type"):
                    tpl["type"] = self._check_type(spec["type"])
                if spec.get("env_values") is not None:
                    tpl["env_values"] = spec["env_values"]
            if frozen is not None:
                ws["workspace_status"].update(
                    frozen=bool(frozen),
                    frozen_at=now_iso() if frozen else None,
                    frozen_by=claims["sub"] if frozen else None,
                )
            ws["updated_at"], ws["updated_by"] = now_iso(), claims["sub"]
            ws["last_action_name"] = "WORKSPACE_UPDATE"
            return json_response(self._render(ws, request.host_url.rstrip("/")))

    def ep_delete_workspace(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        self._refresh_token(request)
        destroy = request.args.get("destroy_resources", "false").lower() == "true"
        with self._lock:
            ws = self._ws(w_id)
            self._check_unlocked(ws)
            # nothing was ever uploaded, so nothing can exist: delete at once
            if not destroy or not any(tpl["dir"] for tpl in ws["templates"]):
                del self._workspaces[w_id]
                self._drop_files(w_id)
                return json_response("")
            self._start_job(ws, "delete", claims)
        return json_response("")

    def _drop_files(self, w_id: str) -> None:
        shutil.rmtree(self.state_dir / "workspaces" / w_id, ignore_errors=True)

    # -- templates and inputs ---------------------------------------------------------------
    def ep_upload(self, request: Request, claims: dict[str, Any], w_id: str, t_id: str) -> Response:
        data = self._multipart_file(request)
        with self._lock:
            ws = self._ws(w_id)
            tpl = self._template(ws, t_id)
            self._check_unlocked(ws)
            dest = self.state_dir / "workspaces" / w_id / t_id
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            removed: list[str] = []
            try:
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                    kept = []
                    for member in tar.getmembers():
                        why = removal_reason(member.name, member.size) if member.isfile() else None
                        if why is None:
                            kept.append(member)
                        else:
                            removed.append(f"{member.name} ({why})")
                    tar.extractall(dest, members=kept, filter="data")
            except (tarfile.TarError, OSError, EOFError) as err:
                shutil.rmtree(dest, ignore_errors=True)
                raise ApiError(400, f"The uploaded file is not a valid tar archive: {err}") from err
            # Schematics' file allowlist (sandbox/ibm/template_files.py): what it drops, Terraform never sees.
            tpl["removed_files"] = removed
            tpl["dir"] = dest
            tpl["metadata_cache"] = None
            ws["template_repo"]["has_uploadedgitrepotar"] = True
            if ws["status"] == "DRAFT":
                ws["status"] = "INACTIVE"
            ws["updated_at"], ws["updated_by"] = now_iso(), claims["sub"]
        return json_response({"file_value": "template.tar", "has_received_file": True, "id": w_id})

    @staticmethod
    def _multipart_file(request: Request) -> bytes:
        """The ``file`` part. The SDK sends it without a filename, which werkzeug would decode as text."""
        ctype = request.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(400, "Expected a multipart/form-data body with a 'file' part.")
        head = b"Content-Type: " + ctype.encode() + b"\r\n\r\n"
        msg = BytesParser(policy=HTTP).parsebytes(head + request.get_data())
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                if payload:
                    return bytes(payload)
        raise ApiError(400, "The multipart body has no 'file' part.")

    def ep_get_inputs(self, request: Request, claims: dict[str, Any], w_id: str, t_id: str) -> Response:
        with self._lock:
            tpl = self._template(self._ws(w_id), t_id)
            return json_response(
                {
                    "env_values": tpl["env_values"],
                    "values": tpl["values"],
                    "values_metadata": self._values_metadata(tpl),
                    "variablestore": self._public_vars(tpl),
                }
            )

    def ep_put_inputs(self, request: Request, claims: dict[str, Any], w_id: str, t_id: str) -> Response:
        body = self._json_body(request)
        with self._lock:
            ws = self._ws(w_id)
            tpl = self._template(ws, t_id)
            self._check_unlocked(ws)
            if "variablestore" in body:
                self._merge_vars(tpl, self._parse_vars(body["variablestore"]))
            if body.get("env_values") is not None:
                tpl["env_values"] = body["env_values"]
            if body.get("values") is not None:
                tpl["values"] = body["values"]
            ws["updated_at"], ws["updated_by"] = now_iso(), claims["sub"]
            return json_response(
                {
                    "env_values": tpl["env_values"],
                    "values": tpl["values"],
                    "variablestore": self._public_vars(tpl),
                }
            )

    def ep_inputs_metadata(self, request: Request, claims: dict[str, Any], w_id: str, t_id: str) -> Response:
        with self._lock:
            return json_response(self._values_metadata(self._template(self._ws(w_id), t_id)))

    def ep_all_inputs(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        with self._lock:
            ws = self._ws(w_id)
            data = [
                {
                    "id": tpl["id"],
                    "folder": tpl["folder"],
                    "type": tpl["type"],
                    "values_metadata": self._values_metadata(tpl),
                    "variablestore": self._public_vars(tpl),
                }
                for tpl in ws["templates"]
            ]
            return json_response({"workspace_id": w_id, "workspace_name": ws["name"], "template_data": data})

    # -- outputs, resources, state ----------------------------------------------------------
    def ep_outputs(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        with self._lock:
            ws = self._ws(w_id)
            return json_response(
                [
                    {
                        "id": tpl["id"],
                        "folder": tpl["folder"],
                        "value_type": tpl["type"],
                        "output_values": [dict(tpl["outputs"])] if tpl["outputs"] else [],
                    }
                    for tpl in ws["templates"]
                ]
            )

    def ep_resources(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        with self._lock:
            ws = self._ws(w_id)
            records = self.inventory.list(workspace_id=w_id)
            resources = [
                {
                    "resource_id": r["id"],
                    "resource_crn": r["crn"],
                    "resource_name": r["name"],
                    "resource_type": r["kind"],
                    "resource_status": "active",
                    "resource_tainted": False,
                    "resource_group_name": "Default",
                }
                for r in records
            ]
            return json_response(
                [
                    {
                        "id": tpl["id"],
                        "folder": tpl["folder"],
                        "template_type": tpl["type"],
                        "resources_count": len(resources),
                        "resources": resources if i == 0 else [],
                        "null_resources": [],
                        "related_resources": [],
                    }
                    for i, tpl in enumerate(ws["templates"])
                ]
            )

    def _runtime_data(self, request: Request, w_id: str, store: str) -> Response:
        """``state_stores`` / ``log_stores``: one ``<store>_url`` per template of the workspace."""
        with self._lock:
            ws = self._ws(w_id)
            base = request.host_url.rstrip("/")
            return json_response(
                {
                    "runtime_data": [
                        {
                            "id": tpl["id"],
                            "engine_name": "terraform",
                            "engine_version": tpl["type"].replace("terraform_", ""),
                            f"{store}_url": f"{base}/v1/workspaces/{w_id}/runtime_data/{tpl['id']}/{store}",
                        }
                        for tpl in ws["templates"]
                    ]
                }
            )

    def ep_state_stores(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        return self._runtime_data(request, w_id, "state_store")

    def ep_state(self, request: Request, claims: dict[str, Any], w_id: str, t_id: str) -> Response:
        with self._lock:
            tpl = self._template(self._ws(w_id), t_id)
            state = json.loads(json.dumps(tpl["state"], default=str))
        state.setdefault("version", 4)
        state.setdefault("resources", [])
        return json_response(state)

    # -- activities and logs ----------------------------------------------------------------
    def ep_list_activities(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        offset = int(request.args.get("offset", 0) or 0)
        limit = int(request.args.get("limit", 100) or 100)
        with self._lock:
            ws = self._ws(w_id)
            actions = [self._render_activity(a) for a in ws["activities"][offset : offset + limit]]
            return json_response({"actions": actions, "workspace_id": w_id, "workspace_name": ws["name"]})

    def _activity(self, ws: dict[str, Any], a_id: str) -> dict[str, Any]:
        for act in ws["activities"]:
            if act["action_id"] == a_id:
                return act
        raise ApiError(404, f"Activity {a_id} not found in workspace {ws['id']}.")

    @staticmethod
    def _render_activity(act: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps({k: v for k, v in act.items() if not k.startswith("_")}))

    def ep_get_activity(self, request: Request, claims: dict[str, Any], w_id: str, a_id: str) -> Response:
        with self._lock:
            return json_response(self._render_activity(self._activity(self._ws(w_id), a_id)))

    def ep_stop_activity(self, request: Request, claims: dict[str, Any], w_id: str, a_id: str) -> Response:
        with self._lock:
            ws = self._ws(w_id)
            act = self._activity(ws, a_id)
            job = ws["job"]
            if job is not None and job.activity is act:
                job.stop.set()
                job.log_lines.append(f"{_log_ts()} Received a request to stop the job.")
        return json_response({"activityid": a_id})

    def ep_activity_logs(self, request: Request, claims: dict[str, Any], w_id: str, a_id: str) -> Response:
        with self._lock:
            act = self._activity(self._ws(w_id), a_id)
            return json_response(
                {
                    "action_id": a_id,
                    "name": act["name"],
                    "templates": [
                        {
                            "log_url": t["log_url"],
                            "template_id": t["template_id"],
                            "template_type": t["template_type"],
                        }
                        for t in act["templates"]
                    ],
                }
            )

    def ep_log_stores(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        return self._runtime_data(request, w_id, "log_store")

    def ep_activity_log(
        self, request: Request, claims: dict[str, Any], w_id: str, t_id: str, a_id: str
    ) -> Response:
        with self._lock:
            ws = self._ws(w_id)
            self._template(ws, t_id)
            act = self._activity(ws, a_id)
            text = "\n".join(act["_log"]) + "\n"
        return Response(text, status=200, content_type="text/plain; charset=utf-8")

    def ep_template_log(self, request: Request, claims: dict[str, Any], w_id: str, t_id: str) -> Response:
        with self._lock:
            ws = self._ws(w_id)
            self._template(ws, t_id)
            text = "\n".join(ws["activities"][0]["_log"]) + "\n" if ws["activities"] else ""
        return Response(text, status=200, content_type="text/plain; charset=utf-8")

    # -- jobs -------------------------------------------------------------------------------
    def ep_plan(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        return self._command(request, claims, w_id, "plan")

    def ep_apply(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        return self._command(request, claims, w_id, "apply")

    def ep_destroy(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        return self._command(request, claims, w_id, "destroy")

    def ep_refresh(self, request: Request, claims: dict[str, Any], w_id: str) -> Response:
        return self._command(request, claims, w_id, "refresh")

    def _command(self, request: Request, claims: dict[str, Any], w_id: str, command: str) -> Response:
        with self._lock:
            ws = self._ws(w_id)
        self._refresh_token(request)
        if command in ("apply", "destroy"):
            body = self._json_body(request, required=False)
            if body.get("action_options") is not None and not isinstance(body["action_options"], dict):
                raise ApiError(400, "action_options must be an object.")
        with self._lock:
            self._check_unlocked(ws)
            if ws["status"] not in RUNNABLE_STATUSES:
                raise ApiError(
                    400,
                    f"Workspace {w_id} is in status {ws['status']}; upload a template first "
                    f"(needs one of {', '.join(RUNNABLE_STATUSES)}).",
                )
            job = self._start_job(ws, command, claims)
        return json_response({"activityid": job.activity["action_id"]}, 202)

    def _start_job(self, ws: dict[str, Any], command: str, claims: dict[str, Any]) -> Job:
        """Create the activity, lock the workspace and start the job thread (caller holds the lock)."""
        a_id = uuid.uuid4().hex
        user = claims.get("email") or claims["sub"]
        name = {"delete": "WORKSPACE_DELETE"}.get(command, command.upper())
        base = self._base_url
        activity: dict[str, Any] = {
            "action_id": a_id,
            "name": name,
            "status": "CREATED",
            "message": [],
            "performed_by": user,
            "performed_at": now_iso(),
            "templates": [
                {
                    "template_id": tpl["id"],
                    "template_type": tpl["type"],
                    "start_time": None,
                    "end_time": None,
                    "status": "CREATED",
                    "message": "",
                    "log_url": f"{base}/v1/workspaces/{ws['id']}/runtime_data/{tpl['id']}"
                    f"/log_store/actions/{a_id}",
                    "log_summary": {
                        "activity_status": "CREATED",
                        "detected_template_type": tpl["type"],
                        "time_taken": 0,
                        "resources_added": 0,
                        "resources_modified": 0,
                        "resources_destroyed": 0,
                        "template_variable_count": len(tpl["variablestore"]),
                    },
                }
                for tpl in ws["templates"]
            ],
            "_log": [],
        }
        job = Job(activity=activity, command=command)
        job.log_lines = activity["_log"]
        ws["activities"].insert(0, activity)
        ws["job"] = job
        ws["workspace_status"].update(locked_by=user, locked_time=now_iso())
        ws["_status_before"] = ws["status"]
        ws["status"] = "INPROGRESS"
        ws["last_action_name"] = name
        self.inventory.record_job(
            workspace_id=ws["id"], workspace_name=ws["name"], action=name, activity_id=a_id
        )
        job.thread = threading.Thread(
            target=self._run_job, args=(ws, job), name=f"schematics-{name}-{a_id[:8]}", daemon=True
        )
        job.thread.start()
        return job

    _base_url = ""

    def set_base_url(self, url: str) -> None:
        self._base_url = url

    def _run_job(self, ws: dict[str, Any], job: Job) -> None:
        act = job.activity
        lines = job.log_lines

        def log(line: str) -> None:
            for part in str(line).splitlines() or [""]:
                lines.append(f"{_log_ts()} {job_label} | {part}")

        job_label = f"Terraform {job.command if job.command != 'delete' else 'destroy'}"
        lines.append(f"{_log_ts()}  -----  New Action  -----")
        lines.append(
            f"{_log_ts()} Request: activitId={act['action_id']}, account={self.inventory.account_id}, "
            f"owner={act['performed_by']}, requestID={uuid.uuid4()}"
        )
        lines.append(f"{_log_ts()} Related Activity: action={act['name']}, workspaceID={ws['id']}")
        lines.append(f"{_log_ts()} Your job was submitted and is in queue, at position 1 out of 1")
        time.sleep(QUEUE_DELAY_S)
        if self.faults.active("slow_jobs"):  # IBM's runners take minutes to start; a stop ends the wait
            job.stop.wait(float(self.faults.options("slow_jobs").get("seconds", 3)))
        started = time.monotonic()
        before = len(self.inventory.list(workspace_id=ws["id"]))
        outcome, error, outputs = "COMPLETED", "", None
        with self._lock:
            if job.stop.is_set():
                outcome = "STOPPED"
            act["status"] = "INPROGRESS"
            for tpl_act in act["templates"]:
                tpl_act.update(status="INPROGRESS", start_time=now_iso())
                tpl_act["log_summary"]["activity_status"] = "INPROGRESS"
            tpl = ws["templates"][0]
            template_dir = Path(tpl["dir"]) / tpl["folder"] if tpl["dir"] else self.state_dir / "empty"
            variables = {
                v["name"]: {"value": v["value"], "type": v["type"], "secure": v["secure"]}
                for v in tpl["variablestore"]
            }
        if outcome != "STOPPED":
            for removed in tpl.get("removed_files") or []:
                lines.append(f"{_log_ts()} Removed template file not on Schematics' allowlist: {removed}")
            lines.append(f"{_log_ts()} Starting command: terraform {job.command}")
            try:
                run = TerraformRun(
                    workspace_id=ws["id"],
                    template_dir=template_dir,
                    variables=variables,
                    state=tpl["state"],
                    log=log,
                    should_stop=lambda: job.stop.is_set() or self._closing.is_set(),
                )
                if job.command == "plan":
                    self.engine.plan(run)
                elif job.command == "apply":
                    outputs = self.engine.apply(run)
                elif job.command in ("destroy", "delete"):
                    self.engine.destroy(run)
                elif job.command == "refresh":
                    self.engine.refresh(run)
                if job.stop.is_set():
                    outcome = "STOPPED"
            except Exception as err:
                outcome = "STOPPED" if job.stop.is_set() else "FAILED"
                error = str(err) or type(err).__name__
                if type(err).__name__ != "TerraformError":  # the engine logs its own "Error:" lines
                    error = f"internal sandbox error: {error}"
                    lines.extend(traceback.format_exc().splitlines())
                    lines.append(f"{_log_ts()} {job_label} | Error: {error}")
        after = len(self.inventory.list(workspace_id=ws["id"]))
        self._finish(ws, job, outcome, error, outputs, before, after, time.monotonic() - started)

    def _finish(
        self,
        ws: dict[str, Any],
        job: Job,
        outcome: str,
        error: str,
        outputs: dict[str, Any] | None,
        before: int,
        after: int,
        took: float,
    ) -> None:
        act, lines = job.activity, job.log_lines
        if outcome == "COMPLETED":
            lines.append(f"{_log_ts()} Command finished successfully.")
        elif outcome == "STOPPED":
            lines.append(f"{_log_ts()} The job was stopped.")
        else:
            lines.append(f"{_log_ts()} Terraform {job.command} failed: {error}")
        lines.append(f"{_log_ts()} Done with the workspace action")
        with self._lock:
            tpl = ws["templates"][0]
            if job.command == "apply" and outcome == "COMPLETED":
                tpl["outputs"] = dict(outputs or {})
            if job.command in ("destroy", "delete") and outcome == "COMPLETED":
                tpl["outputs"] = {}
            key = "M2001_ActivitySuccessful" if outcome == "COMPLETED" else f"M2002_Activity{outcome.title()}"
            act["status"] = outcome
            act["message"] = [error] if error else []
            for tpl_act in act["templates"]:
                tpl_act.update(
                    status=outcome,
                    end_time=now_iso(),
                    message=json.dumps({"messagekey": key, "parms": {}, "requestid": uuid.uuid4().hex}),
                )
                summary = tpl_act["log_summary"]
                summary.update(
                    activity_status=outcome,
                    time_taken=round(took, 3),
                    resources_added=max(0, after - before),
                    resources_destroyed=max(0, before - after),
                )
                if error:
                    summary["error"] = error
            prior = ws.pop("_status_before", "INACTIVE")
            if outcome == "FAILED":
                ws["status"], ws["failure_reason"] = "FAILED", error
            elif outcome == "STOPPED":
                ws["status"] = "STOPPED"
            elif job.command == "apply":
                ws["status"] = "ACTIVE" if after else "INACTIVE"
            elif job.command in ("destroy", "delete"):
                ws["status"] = "INACTIVE"
            else:  # plan / refresh leave the workspace as it was
                ws["status"] = (
                    prior if prior not in ("FAILED", "STOPPED") else ("ACTIVE" if after else "INACTIVE")
                )
            if outcome != "FAILED":
                ws["failure_reason"] = ""
            ws["job"] = None
            ws["updated_at"] = now_iso()
            if self.faults.active("workspace_locked"):
                seconds = float(self.faults.options("workspace_locked").get("seconds", 3))
                ws["locked_until"] = time.time() + seconds
            if job.command == "delete" and outcome == "COMPLETED":
                self._workspaces.pop(ws["id"], None)
                self._drop_files(ws["id"])

    # -- lifecycle --------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Ask running jobs to stop and wait for them briefly."""
        self._closing.set()
        with self._lock:
            jobs = [ws["job"] for ws in self._workspaces.values() if ws["job"] is not None]
        for job in jobs:
            job.stop.set()
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
