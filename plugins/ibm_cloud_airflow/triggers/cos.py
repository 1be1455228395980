"""Trigger that waits for COS completion markers, fails fast on ``_FAILED`` and on stalled progress.

The same check (:func:`check_markers`) is used by :class:`~ibm_cloud_airflow.sensors.cos.CosKeySensor`
in poke/reschedule mode, so all three modes behave the same.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from ibm_cloud_airflow.triggers.native import NativeTemplatesMixin, ends_here, push_xcoms

FAILED_MARKER = "_FAILED"
PROGRESS_FILE = "progress.json"


def _sibling(key: str, name: str) -> str:
    return _in(posixpath.dirname(key), name)


def _in(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def describe_progress(key: str, progress: Any) -> str:
    if not isinstance(progress, dict):
        return f"{key}: {progress!r}"
    metrics = progress.get("metrics") or {}
    shown = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())
    )
    return f"{key}: epoch {progress.get('epoch')}/{progress.get('epochs')} {shown}".rstrip()


def new_state(now: float | None = None) -> dict[str, Any]:
    return {"done": [], "progress": {}, "last_change": now if now is not None else time.time()}


def _folders(keys: list[str], watch: list[str] | None) -> list[str]:
    """The folders to watch: each key's, then the extra ones (``a/b/`` and ``a/b`` alike)."""
    out: list[str] = []
    for folder in [posixpath.dirname(k) for k in keys] + [w.rstrip("/") for w in watch or []]:
        if folder not in out:
            out.append(folder)
    return out


def check_markers(
    hook: Any,
    bucket: str,
    keys: list[str],
    state: dict[str, Any],
    *,
    stall_timeout: float | None,
    check_failed: bool = True,
    now: float | None = None,
    watch: list[str] | None = None,
) -> dict[str, Any]:
    """One look at COS. Mutates ``state`` (done keys, progress ETags, when each folder last changed).

    ``watch`` adds folders that write no awaited marker but whose ``_FAILED`` fails the wait and
    whose ``progress.json`` counts (the workers of a multi-worker run). Every folder still at work
    has its own stall clock: one server that stops reporting is a stall even while others go on.
    A folder is done when its key is present, or (no key) when its progress says ``finished``.

    Returns ``{"status": "success"|"failed"|"stalled"|"waiting", "progress": [lines], ...}``; a
    ``failed`` result carries ``key``, ``error``, ``log_tail`` and ``message``.
    """
    now = time.time() if now is None else now
    done = set(state.setdefault("done", []))
    seen = state.setdefault("progress", {})
    state.setdefault("last_change", now)
    changed = state.setdefault("changed", {})
    finished = set(state.setdefault("finished", []))
    lines: list[str] = []
    for key in keys:
        if key not in done and hook.head(bucket, key) is not None:
            done.add(key)
            state["last_change"] = now
            lines.append(f"{key}: present")
    done_folders = {posixpath.dirname(k) for k in done} | finished
    active = [f for f in _folders(keys, watch) if f not in done_folders]
    for folder in active:
        if check_failed:
            failed_key = _in(folder, FAILED_MARKER)
            if hook.head(bucket, failed_key) is not None:
                try:
                    body = hook.read_json(bucket, failed_key)
                except Exception:  # not JSON: show the text as the error
                    body = hook.read_text(bucket, failed_key)
                body = body if isinstance(body, dict) else {"error": str(body)}
                error = body.get("error") or "(no error given)"
                log_tail = body.get("log_tail") or ""
                if isinstance(log_tail, list):
                    log_tail = "\n".join(str(x) for x in log_tail)
                state["done"] = sorted(done)
                return {
                    "status": "failed",
                    "progress": lines,
                    "key": failed_key,
                    "error": error,
                    "log_tail": log_tail,
                    # the workload's own classification, e.g. "peer_lost": another server is gone
                    "cause": body.get("cause"),
                    "message": f"The workload wrote cos://{bucket}/{failed_key}: {error}",
                }
        progress_key = _in(folder, PROGRESS_FILE)
        meta = hook.head(bucket, progress_key)
        if meta is not None:
            tag = (
                str(meta.get("ETag") or "") + "|" + str(meta.get("LastModified") or meta.get("ContentLength"))
            )
            if seen.get(progress_key) != tag:
                seen[progress_key] = tag
                state["last_change"] = changed[folder] = now
                body = hook.read_json(bucket, progress_key)
                lines.append(describe_progress(progress_key, body))
                awaited = folder in {posixpath.dirname(k) for k in keys}
                if not awaited and isinstance(body, dict) and body.get("status") == "finished":
                    finished.add(folder)
    state["done"] = sorted(done)
    state["finished"] = sorted(finished)
    if all(k in done for k in keys):
        return {"status": "success", "progress": lines, "keys": list(keys)}
    # The stall clock of a folder starts with its first progress report: booting (driver install,
    # environment, data download) takes as long as it takes, bounded by the sensor's own timeout.
    # A present marker of another folder starts it too (that server's run is surely under way).
    for folder in active:
        if folder in finished:
            continue
        started = _in(folder, PROGRESS_FILE) in seen or bool(done)
        idle = now - float(changed.get(folder, state["last_change"]))
        if started and stall_timeout is not None and stall_timeout > 0 and idle > stall_timeout:
            missing = [k for k in keys if k not in done]
            return {
                "status": "stalled",
                "progress": lines,
                "message": (
                    f"No progress for {idle:.0f} s (stall_timeout {stall_timeout:.0f} s): "
                    f"{folder}/progress.json did not change and {missing} did not appear"
                ),
            }
    return {"status": "waiting", "progress": lines}


#: VPC instance states of a server that has powered off (or is doing so).
STOPPED_STATES = ("stopping", "stopped")


def check_servers(
    vpc_hook: Any, slug: str, keys: list[str], state: dict[str, Any], watch: list[str] | None = None
) -> dict[str, Any] | None:
    """A result when a server still at work has stopped or is gone, else None.

    The workload powers its server off when it cannot write any marker (COS refused its writes or
    is unreachable), and a lost host or a server deleted by hand leaves no server at all: either
    way the markers never come. Server ``<slug>-vm-<i>`` works in folder ``vm-<i>/`` (the keys'
    folders and ``watch``); a folder whose marker is present or whose progress says ``finished``
    is done. ``server_stopped`` when one has stopped, else ``server_missing``. One VPC list call.
    """
    done_folders = {posixpath.dirname(k) for k in state.get("done", [])} | set(state.get("finished", []))
    status_of = {
        str(i.get("name") or ""): i.get("status")
        for i in vpc_hook.list_all("instance")
        if str(i.get("name") or "").startswith(f"{slug}-vm-")
    }
    stopped, missing = [], []
    for folder in _folders(keys, watch):
        if folder in done_folders:
            continue
        name = f"{slug}-{posixpath.basename(folder)}"
        if name not in status_of:
            missing.append((name, "gone", folder + "/"))
        elif status_of[name] in STOPPED_STATES:
            stopped.append((name, status_of[name], folder + "/"))
    if not (stopped or missing):
        return None
    found = stopped or missing
    name, status, folder = found[0]
    others = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    why = (
        "it powers itself off when it cannot write to COS"
        if stopped
        else "deleted, or lost with its host; its marker never came"
    )
    return {
        "status": "server_stopped" if stopped else "server_missing",
        "servers": [s[0] for s in found],
        "message": f"Server {name} is {status} without a marker in {folder}{others}: {why}",
    }


def key_list(value: str | list[str] | None) -> list[str]:
    """One key or a list of keys, as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(k) for k in value]


class CosKeyTrigger(NativeTemplatesMixin, BaseTrigger):
    """Waits until every key in ``bucket_key`` exists in ``bucket_name``.

    Fails early (``status: failed``) when a ``_FAILED`` appears next to a key or in one of the
    ``watch_prefixes`` folders, and (``status: stalled``) when a folder's ``progress.json`` did not
    change for ``stall_timeout`` seconds (see :func:`check_markers`); ``status: timeout`` when
    ``wait_timeout`` seconds pass. New progress is logged as it appears. COS calls run in worker
    threads (``asyncio.to_thread``).

    For a sensor that starts in the triggerer (``start_from_trigger``), the triggerer renders the
    sensor's templated fields into the attributes of the same name, as Python objects
    (:class:`~ibm_cloud_airflow.triggers.native.NativeTemplatesMixin`). With ``end_from_trigger``
    the task ends here on success, without a worker.
    """

    def __init__(
        self,
        bucket_name: str,
        bucket_key: str | list[str] | None = None,
        cos_conn_id: str = "ibm_cos_default",
        poke_interval: float = 60.0,
        stall_timeout: float | None = None,
        check_failed: bool = True,
        state: dict[str, Any] | None = None,
        max_consecutive_errors: int = 3,
        wait_timeout: float | None = None,
        end_from_trigger: bool = False,
        watch_prefixes: list[str] | None = None,
        ibm_conn_id: str | None = None,
        server_name_prefix: str | None = None,
        server_check_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.ibm_conn_id = ibm_conn_id
        self.server_name_prefix = server_name_prefix
        self.server_check_interval = server_check_interval
        self.bucket_name = bucket_name
        self.bucket_key = bucket_key
        self.cos_conn_id = cos_conn_id
        self.poke_interval = poke_interval
        self.stall_timeout = stall_timeout
        self.wait_timeout = wait_timeout
        self.check_failed = check_failed
        self.state = state
        self.max_consecutive_errors = max_consecutive_errors
        self.end_from_trigger = end_from_trigger
        self.watch_prefixes = watch_prefixes

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ibm_cloud_airflow.triggers.cos.CosKeyTrigger",
            {
                "bucket_name": self.bucket_name,
                "bucket_key": self.bucket_key,
                "cos_conn_id": self.cos_conn_id,
                "poke_interval": self.poke_interval,
                "stall_timeout": self.stall_timeout,
                "check_failed": self.check_failed,
                "state": self.state,
                "max_consecutive_errors": self.max_consecutive_errors,
                "wait_timeout": self.wait_timeout,
                "end_from_trigger": self.end_from_trigger,
                "watch_prefixes": self.watch_prefixes,
                "ibm_conn_id": self.ibm_conn_id,
                "server_name_prefix": self.server_name_prefix,
                "server_check_interval": self.server_check_interval,
            },
        )

    def _make_hook(self) -> Any:
        from ibm_cloud_airflow.hooks.cos import CosHook

        hook = CosHook(self.cos_conn_id)
        hook.client  # noqa: B018 - resolve the connection and build the client in this thread
        return hook

    async def _check_servers(self, keys: list[str], state: dict[str, Any]) -> dict[str, Any] | None:
        """Look for stopped servers through the VPC API (when a connection and the slug are given)."""
        if not (self.ibm_conn_id and self.server_name_prefix):
            return None
        from ibm_cloud_airflow.hooks.vpc import VpcHook

        try:
            hook = VpcHook(str(self.ibm_conn_id))
            watch = key_list(self.watch_prefixes)
            return await asyncio.to_thread(
                check_servers, hook, str(self.server_name_prefix), keys, state, watch
            )
        except Exception as exc:  # the markers stay the main signal
            self.log.warning("Could not check the servers' state: %s", exc)
            return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state = dict(self.state) if self.state else new_state()
        errors = 0
        try:
            keys = key_list(self.bucket_key)
            if not keys or not all(keys):
                raise ValueError(f"no marker keys to wait for (bucket_key {self.bucket_key!r})")
            stall_timeout, wait_timeout = self.stall_timeout, self.wait_timeout
            watch = key_list(self.watch_prefixes)
            hook = await asyncio.to_thread(self._make_hook)
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": str(exc)})
            return
        deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
        next_server_check = time.monotonic() + self.server_check_interval
        while True:
            try:
                result = await asyncio.to_thread(
                    check_markers,
                    hook,
                    self.bucket_name,
                    keys,
                    state,
                    stall_timeout=stall_timeout,
                    check_failed=self.check_failed,
                    watch=watch,
                )
                errors = 0
            except Exception as exc:
                errors += 1
                self.log.warning("COS check failed (%d/%d): %s", errors, self.max_consecutive_errors, exc)
                if errors >= self.max_consecutive_errors:
                    yield TriggerEvent({"status": "error", "message": str(exc)})
                    return
                await asyncio.sleep(self.poke_interval)
                continue
            for line in result.get("progress", []):
                self.log.info("Progress %s", line)
            status = result["status"]
            if status == "failed":
                self.log.error("%s\n--- workload log tail ---\n%s", result["message"], result.get("log_tail"))
            if status == "success" and ends_here(self):
                self.log.info("All markers present: %s", keys)
                await push_xcoms(self.task_instance, {"return_value": keys})
                yield TaskSuccessEvent()
                return
            if status == "waiting" and time.monotonic() >= next_server_check:
                next_server_check = time.monotonic() + self.server_check_interval
                result = await self._check_servers(keys, state) or result
                status = result["status"]
            if status != "waiting":
                yield TriggerEvent({**result, "bucket_name": self.bucket_name})
                return
            if deadline is not None and time.monotonic() >= deadline:
                yield TriggerEvent(
                    {"status": "timeout", "message": f"{keys} did not all appear within {wait_timeout:.0f} s"}
                )
                return
            await asyncio.sleep(self.poke_interval)
