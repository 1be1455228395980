"""The COS marker watch: one look at a run's markers, as typed state and a typed result.

A workload writes, per folder (one per server), ``progress.json`` while it works and last a marker:
``_SUCCESS`` or ``_FAILED`` (with ``error`` and ``log_tail``). :class:`CosMarkerWatch` looks at
them once per :meth:`~CosMarkerWatch.step` and answers a :class:`WatchResult`. Both waits drive it:
:class:`~ibm_cloud_airflow.sensors.cos.CosKeySensor` (a poke: its state kept in
``task_state_store``) and :class:`~ibm_cloud_airflow.triggers.cos.CosKeyTrigger` (a loop: its
state in the trigger's kwargs). :meth:`WatchState.to_dict` is what both store.

* **done**: every awaited key exists.
* **failed**: a ``_FAILED`` in a folder still at work (a key's folder, or a watched one).
* **stalled**: a folder still at work whose ``progress.json`` did not change for ``stall_timeout``
  seconds once it started (its first report, or any marker): one silent server is a stall even
  while others go on. Before that the servers boot, which only the wait's timeout bounds.
* **lost**: a :class:`LivenessCheck` (by import path, so that the triggerer can run it too) found
  a worker gone that no marker will report, e.g. a server that powered off.
* **timeout** and **error** come from the wait that drives the watch (its deadline, its COS errors).

A watched folder without an awaited key is done when its progress says ``"status": "finished"``
(a multi-worker run awaits the chief's marker only).
"""

from __future__ import annotations

import enum
import importlib
import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

FAILED_MARKER = "_FAILED"
PROGRESS_FILE = "progress.json"


class WatchStatus(enum.StrEnum):
    """What a look at COS found; the value is the trigger event's ``status``."""

    DONE = "success"
    WAITING = "waiting"
    FAILED = "failed"
    STALLED = "stalled"
    LOST = "lost"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class WatchResult:
    """One look's answer. ``progress``: new progress lines to log (every status may carry some).

    ``failed_key``, ``error``, ``log_tail`` and ``cause`` describe a ``_FAILED`` marker (``cause``:
    the workload's own classification, e.g. ``"peer_lost"``). ``lost`` and ``reason`` describe what
    a liveness check found (the workers gone, and the check's own word for how).
    """

    status: WatchStatus
    message: str = ""
    progress: tuple[str, ...] = ()
    failed_key: str | None = None
    error: str | None = None
    log_tail: str = ""
    cause: str | None = None
    lost: tuple[str, ...] = ()
    reason: str | None = None

    def to_event(self) -> dict[str, Any]:
        """The trigger event's payload (JSON: plain values)."""
        payload = asdict(self)
        payload["status"] = self.status.value
        payload["progress"] = list(self.progress)
        payload["lost"] = list(self.lost)
        return payload

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> WatchResult:
        """The result a trigger event carries (unknown fields ignored)."""
        return cls(
            status=WatchStatus(event.get("status")),
            message=str(event.get("message") or ""),
            progress=tuple(event.get("progress") or ()),
            failed_key=event.get("failed_key"),
            error=event.get("error"),
            log_tail=str(event.get("log_tail") or ""),
            cause=event.get("cause"),
            lost=tuple(event.get("lost") or ()),
            reason=event.get("reason"),
        )


@dataclass
class WatchState:
    """What the watch remembers between looks (serialized as a dict of plain values).

    :ivar last_change: when anything last changed (a marker, any progress); the stall clock of a
        folder that has not reported yet.
    :ivar done: the awaited keys found.
    :ivar finished: watched folders whose progress says ``finished``.
    :ivar progress: progress key -> the version last seen (ETag and time), to log each once.
    :ivar changed: folder -> when its progress last changed (its stall clock).
    """

    last_change: float
    done: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    progress: dict[str, str] = field(default_factory=dict)
    changed: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fresh(cls, now: float | None = None) -> WatchState:
        return cls(last_change=time.time() if now is None else now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, now: float | None = None) -> WatchState:
        """A stored state (missing fields take their defaults); fresh when there is none."""
        if not data:
            return cls.fresh(now)
        return cls(
            last_change=float(data.get("last_change", time.time() if now is None else now)),
            done=list(data.get("done") or []),
            finished=list(data.get("finished") or []),
            progress=dict(data.get("progress") or {}),
            changed={k: float(v) for k, v in (data.get("changed") or {}).items()},
        )


@dataclass(frozen=True)
class LivenessCheck:
    """A check that no marker can answer (is each worker still alive?), run while the watch waits.

    ``function`` is the import path of ``f(pending: list[str], **params) -> WatchResult | None``:
    given the folders still at work, a ``lost`` result when their workers are gone, else None. It is
    imported where it runs (a worker, or the triggerer), so that the check travels as plain values
    (:meth:`to_dict`) in the trigger's kwargs; ``params`` may hold templates, rendered with the
    sensor's fields.

    :param interval_s: seconds between two checks (each costs the checked API a call).
    """

    function: str
    params: dict[str, Any] = field(default_factory=dict)
    interval_s: float = 30.0

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function, "params": dict(self.params), "interval_s": self.interval_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | LivenessCheck | None) -> LivenessCheck | None:
        if data is None or isinstance(data, LivenessCheck):
            return data
        return cls(str(data["function"]), dict(data.get("params") or {}), float(data.get("interval_s", 30.0)))

    def run(self, pending: list[str]) -> WatchResult | None:
        module, _, name = self.function.rpartition(".")
        check: Callable[..., WatchResult | None] = getattr(importlib.import_module(module), name)
        return check(pending, **self.params)


def key_list(value: str | Iterable[str] | None) -> list[str]:
    """One key or a list of keys, as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(k) for k in value]


def describe_progress(key: str, progress: Any) -> str:
    """A progress report as one log line: ``<key>: epoch 3/10 loss=0.1234``."""
    if not isinstance(progress, dict):
        return f"{key}: {progress!r}"
    metrics = progress.get("metrics") or {}
    shown = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())
    )
    return f"{key}: epoch {progress.get('epoch')}/{progress.get('epochs')} {shown}".rstrip()


def _in(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


@dataclass
class CosMarkerWatch:
    """Wait for ``keys`` in ``bucket``; see the module's docs for what each look can find.

    :param watch_prefixes: more folders whose ``_FAILED`` fails the wait and whose progress counts
        for stalls, though no key is awaited there (``a/b/`` and ``a/b`` alike).
    :param stall_timeout: seconds without progress before a stall; None or 0: never.
    :param liveness: checked every ``interval_s`` while waiting; its errors are logged, not raised
        (the markers stay the main signal).
    :param log: where the watch logs a failed liveness check (the task's or the trigger's log).
    """

    bucket: str
    keys: list[str]
    state: WatchState
    watch_prefixes: list[str] = field(default_factory=list)
    stall_timeout: float | None = None
    liveness: LivenessCheck | None = None
    log: Any = None
    #: ``time.monotonic()`` at which the next liveness check is due (0: at the first wait)
    next_liveness: float = 0.0

    @property
    def folders(self) -> list[str]:
        """Each key's folder, then the watched ones, once each."""
        out: list[str] = []
        for folder in [posixpath.dirname(k) for k in self.keys] + [
            w.rstrip("/") for w in self.watch_prefixes
        ]:
            if folder not in out:
                out.append(folder)
        return out

    def pending(self) -> list[str]:
        """The folders still at work: no marker yet, and (a watched folder) not finished."""
        done = {posixpath.dirname(k) for k in self.state.done} | set(self.state.finished)
        return [f for f in self.folders if f not in done]

    def postpone_liveness(self) -> None:
        """The next liveness check after one interval (the wait just checked, or just started)."""
        if self.liveness is not None:
            self.next_liveness = time.monotonic() + self.liveness.interval_s

    def step(self, cos: Any, now: float | None = None) -> WatchResult:
        """One look at COS (:meth:`look`), and the liveness check where it is due and all waits."""
        result = self.look(cos, now)
        if result.status is not WatchStatus.WAITING or self.liveness is None:
            return result
        if time.monotonic() < self.next_liveness:
            return result
        self.postpone_liveness()
        try:
            lost = self.liveness.run(self.pending())
        except Exception as exc:  # the markers stay the main signal
            if self.log is not None:
                self.log.warning("Liveness check %s failed: %s", self.liveness.function, exc)
            return result
        return replace(lost, progress=result.progress + lost.progress) if lost is not None else result

    def look(self, cos: Any, now: float | None = None) -> WatchResult:
        """One look at the markers and the progress files (``cos``: head/read_json/read_text)."""
        now = time.time() if now is None else now
        state = self.state
        lines: list[str] = []
        for key in self.keys:
            if key not in state.done and cos.head(self.bucket, key) is not None:
                state.done = sorted({*state.done, key})
                state.last_change = now
                lines.append(f"{key}: present")
        active = self.pending()
        awaited = {posixpath.dirname(k) for k in self.keys}
        for folder in active:
            failed = self._failed(cos, folder)
            if failed is not None:
                return replace(failed, progress=tuple(lines))
            progress_key = _in(folder, PROGRESS_FILE)
            meta = cos.head(self.bucket, progress_key)
            if meta is None:
                continue
            tag = f"{meta.get('ETag') or ''}|{meta.get('LastModified') or meta.get('ContentLength')}"
            if state.progress.get(progress_key) == tag:
                continue
            state.progress[progress_key] = tag
            state.last_change = state.changed[folder] = now
            body = cos.read_json(self.bucket, progress_key)
            lines.append(describe_progress(progress_key, body))
            if folder not in awaited and isinstance(body, dict) and body.get("status") == "finished":
                state.finished = sorted({*state.finished, folder})
        if all(k in state.done for k in self.keys):
            return WatchResult(WatchStatus.DONE, f"All markers present: {self.keys}", tuple(lines))
        stalled = self._stalled(active, now)
        if stalled is not None:
            return WatchResult(WatchStatus.STALLED, stalled, tuple(lines))
        return WatchResult(WatchStatus.WAITING, progress=tuple(lines))

    def _failed(self, cos: Any, folder: str) -> WatchResult | None:
        key = _in(folder, FAILED_MARKER)
        if cos.head(self.bucket, key) is None:
            return None
        try:
            body = cos.read_json(self.bucket, key)
        except Exception:  # not JSON: the text is the error
            body = cos.read_text(self.bucket, key)
        body = body if isinstance(body, dict) else {"error": str(body)}
        error = str(body.get("error") or "(no error given)")
        log_tail = body.get("log_tail") or ""
        if isinstance(log_tail, list):
            log_tail = "\n".join(str(x) for x in log_tail)
        return WatchResult(
            WatchStatus.FAILED,
            f"The workload wrote cos://{self.bucket}/{key}: {error}",
            failed_key=key,
            error=error,
            log_tail=str(log_tail),
            cause=body.get("cause"),
        )

    def _stalled(self, active: list[str], now: float) -> str | None:
        """Why the first silent folder is a stall, or None."""
        if not self.stall_timeout or self.stall_timeout <= 0:
            return None
        state = self.state
        for folder in active:
            if folder in state.finished:
                continue
            # A folder's clock starts with its first report, or with any marker (the run is under way).
            started = _in(folder, PROGRESS_FILE) in state.progress or bool(state.done)
            idle = now - float(state.changed.get(folder, state.last_change))
            if started and idle > self.stall_timeout:
                missing = [k for k in self.keys if k not in state.done]
                return (
                    f"No progress for {idle:.0f} s (stall_timeout {self.stall_timeout:.0f} s): "
                    f"{folder}/progress.json did not change and {missing} did not appear"
                )
        return None
