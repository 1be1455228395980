"""The COS marker watch: what one look finds, its state as plain values, its liveness check.

COS is the in-memory stand-in of the conftest (the watch calls head/read_json/read_text only).
"""

from __future__ import annotations

import json
import logging

import pytest

from ibm_cloud_airflow.utils.cos_watch import (
    CosMarkerWatch,
    LivenessCheck,
    WatchResult,
    WatchState,
    WatchStatus,
    key_list,
)

from ..conftest import FakeCos

KEYS = ["p/vm-0/_SUCCESS", "p/vm-1/_SUCCESS"]
SERVERS = ["p/vm-0/", "p/vm-1/"]


def watch(keys=KEYS, stall_timeout=None, **kw) -> CosMarkerWatch:
    return CosMarkerWatch(
        bucket="b", keys=list(keys), state=WatchState.fresh(now=0), stall_timeout=stall_timeout, **kw
    )


def test_a_look_logs_new_progress_once_and_a_failed_marker_ends_the_wait():
    cos, w = FakeCos(), watch(stall_timeout=100)
    assert w.look(cos, now=1).status is WatchStatus.WAITING
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 1, "epochs": 3, "metrics": {"loss": 0.51234}}))
    assert w.look(cos, now=50).progress == ("p/vm-0/progress.json: epoch 1/3 loss=0.5123",)
    assert w.look(cos, now=60).progress == ()  # logged once
    cos.put("p/vm-0/_SUCCESS", "sha")
    res = w.look(cos, now=70)
    assert res.status is WatchStatus.WAITING and res.progress == ("p/vm-0/_SUCCESS: present",)
    assert w.state.done == ["p/vm-0/_SUCCESS"]
    cos.put("p/vm-1/_FAILED", json.dumps({"error": "CUDA OOM", "log_tail": ["a", "b"], "cause": "oom"}))
    res = w.look(cos, now=80)
    assert res.status is WatchStatus.FAILED and res.error == "CUDA OOM" and res.log_tail == "a\nb"
    assert res.failed_key == "p/vm-1/_FAILED" and res.cause == "oom"
    assert res.message == "The workload wrote cos://b/p/vm-1/_FAILED: CUDA OOM"


def test_a_failed_marker_that_is_not_json_is_the_error():
    cos = FakeCos()
    cos.put("p/vm-0/_FAILED", "plain text error")
    res = watch(KEYS[:1]).look(cos, now=1)
    assert res.status is WatchStatus.FAILED and res.error == "plain text error"


def test_a_failed_marker_of_a_folder_already_done_is_not_looked_at():
    cos = FakeCos()
    cos.put("p/vm-0/_SUCCESS", "sha")
    cos.put("p/vm-0/_FAILED", json.dumps({"error": "old"}))
    assert watch().look(cos, now=1).status is WatchStatus.WAITING


def test_done_when_every_key_is_there_and_a_stall_only_once_started():
    cos, w = FakeCos(), watch(stall_timeout=10)
    # Before the first progress report the servers are booting: no stall yet, however long.
    assert w.look(cos, now=1000).status is WatchStatus.WAITING
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 1, "epochs": 3}))
    assert w.look(cos, now=1001).status is WatchStatus.WAITING
    res = w.look(cos, now=1012)
    assert res.status is WatchStatus.STALLED and "No progress for 11 s (stall_timeout 10 s)" in res.message
    cos.objects.pop("p/vm-0/progress.json")
    for k in KEYS:
        cos.put(k, "x")
    assert watch(stall_timeout=10).look(cos, now=5).status is WatchStatus.DONE
    assert watch(stall_timeout=None).look(cos, now=10**6).status is WatchStatus.DONE


def test_a_present_marker_starts_the_other_folders_stall_clocks():
    cos, w = FakeCos(), watch(stall_timeout=10)
    cos.put("p/vm-0/_SUCCESS", "sha")
    assert w.look(cos, now=5).status is WatchStatus.WAITING
    res = w.look(cos, now=16)
    assert res.status is WatchStatus.STALLED and "p/vm-1/progress.json" in res.message
    assert "['p/vm-1/_SUCCESS'] did not appear" in res.message


# -- multi-worker runs: the chief's marker is awaited, every server's folder is watched ------------


def test_a_watched_folders_failed_marker_fails_the_wait():
    cos = FakeCos()
    cos.put("p/vm-1/_FAILED", json.dumps({"error": "worker 1: CUDA error"}))
    res = watch(KEYS[:1], watch_prefixes=SERVERS).look(cos, now=1)
    assert res.status is WatchStatus.FAILED and res.failed_key == "p/vm-1/_FAILED"
    # Without the watched folders the same wait would not see it: the folder list is what matters.
    assert watch(KEYS[:1]).look(cos, now=1).status is WatchStatus.WAITING


def test_the_chiefs_marker_alone_is_done():
    cos = FakeCos()
    cos.put("p/vm-1/progress.json", json.dumps({"epoch": 3, "epochs": 3, "status": "finished"}))
    cos.put("p/vm-0/_SUCCESS", "sha")
    assert (
        watch(KEYS[:1], stall_timeout=10, watch_prefixes=SERVERS).look(cos, now=1).status is WatchStatus.DONE
    )


def test_every_server_has_its_own_stall_clock():
    cos, w = FakeCos(), watch(stall_timeout=10, watch_prefixes=SERVERS)
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 1, "epochs": 9}))
    cos.put("p/vm-1/progress.json", json.dumps({"epoch": 1, "epochs": 9}))
    assert w.look(cos, now=1).status is WatchStatus.WAITING
    # vm-0 keeps reporting; vm-1 went silent: a stall, though the run as a whole moves.
    for now in (6, 12):
        cos.put("p/vm-0/progress.json", json.dumps({"epoch": now, "epochs": 9}))
        res = w.look(cos, now=now)
    assert res.status is WatchStatus.STALLED and "p/vm-1/progress.json" in res.message, res


def test_a_worker_that_finished_is_not_a_stall_while_the_chief_publishes():
    cos, w = FakeCos(), watch(KEYS[:1], stall_timeout=10, watch_prefixes=SERVERS)
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 3, "epochs": 3}))
    cos.put("p/vm-1/progress.json", json.dumps({"epoch": 3, "epochs": 3, "status": "finished"}))
    assert w.look(cos, now=1).status is WatchStatus.WAITING
    assert w.state.finished == ["p/vm-1"] and w.pending() == ["p/vm-0"]
    # The chief is still silent past the stall timeout (it would be a stall) ...
    res = w.look(cos, now=12)
    assert res.status is WatchStatus.STALLED and "p/vm-0/progress.json" in res.message
    # ... but a finished worker alone never is.
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 3, "epochs": 3, "note": "publishing"}))
    assert w.look(cos, now=13).status is WatchStatus.WAITING


# -- the state and the result as plain values ------------------------------------------------------


def test_the_state_goes_on_from_its_plain_values():
    cos, w = FakeCos(), watch(stall_timeout=10, watch_prefixes=SERVERS)
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 1, "epochs": 9}))
    cos.put("p/vm-1/progress.json", json.dumps({"status": "finished"}))
    cos.put("p/vm-0/_SUCCESS", "sha")
    w.look(cos, now=3)
    stored = json.loads(json.dumps(w.state.to_dict()))  # what task_state_store and kwargs keep
    again = watch(stall_timeout=10, watch_prefixes=SERVERS)
    again.state = WatchState.from_dict(stored)
    assert again.state == w.state
    # the same progress is not logged again by the watch that goes on
    assert again.look(cos, now=4).progress == ()


def test_a_stored_state_without_the_later_fields_and_none_are_read():
    old = {"done": [], "progress": {"p/vm-0/progress.json": "t"}, "last_change": 0}
    assert WatchState.from_dict(old) == WatchState(last_change=0.0, progress={"p/vm-0/progress.json": "t"})
    assert WatchState.from_dict(None, now=7) == WatchState(last_change=7)


def test_a_result_travels_as_an_event_and_back():
    result = WatchResult(WatchStatus.LOST, "gone", progress=("a: present",), lost=("s-vm-0",), reason="gone")
    event = json.loads(json.dumps(result.to_event()))
    assert event["status"] == "lost" and event["lost"] == ["s-vm-0"]
    assert WatchResult.from_event(event) == result
    assert WatchResult.from_event({"status": "error", "message": "down"}) == WatchResult(
        WatchStatus.ERROR, "down"
    )
    with pytest.raises(ValueError):
        WatchResult.from_event({"status": "server_gone"})


def test_key_list():
    assert key_list(None) == [] and key_list("k") == ["k"] and key_list(("a", "b")) == ["a", "b"]


# -- the liveness check ----------------------------------------------------------------------------

CALLS: list[tuple[list[str], dict]] = []


def gone_check(pending: list[str], **params):
    """A liveness check found by import path: every pending folder's worker is gone."""
    CALLS.append((pending, params))
    return WatchResult(WatchStatus.LOST, f"{pending} gone", lost=tuple(pending), reason="gone")


def broken_check(pending: list[str], **params):
    raise RuntimeError("VPC API down")


HERE = "tests.ibm_cloud_airflow.utils.test_cos_watch"


@pytest.fixture
def calls():
    # the check is imported by path: it may be this module loaded a second time, with its own list
    import importlib

    recorded = importlib.import_module(HERE).CALLS
    recorded.clear()
    return recorded


def test_the_liveness_check_runs_by_import_path_while_waiting_and_after_its_interval(calls):
    cos = FakeCos()
    cos.put("p/vm-0/_SUCCESS", "sha")
    check = LivenessCheck(f"{HERE}.gone_check", {"slug": "run-1"}, interval_s=3600)
    assert LivenessCheck.from_dict(json.loads(json.dumps(check.to_dict()))) == check
    w = watch(liveness=check)
    res = w.step(cos, now=1)
    # only the folders still at work, with the check's own parameters
    assert calls == [(["p/vm-1"], {"slug": "run-1"})]
    assert res.status is WatchStatus.LOST and res.lost == ("p/vm-1",) and res.message == "['p/vm-1'] gone"
    assert res.progress == ("p/vm-0/_SUCCESS: present",)  # the look's progress is kept
    # not again before its interval
    assert w.step(cos, now=2).status is WatchStatus.WAITING and len(calls) == 1
    # and never once the markers said done
    w.next_liveness = 0
    cos.put("p/vm-1/_SUCCESS", "sha")
    assert w.step(cos, now=3).status is WatchStatus.DONE and len(calls) == 1


def test_a_postponed_check_waits_one_interval(calls):
    w = watch(liveness=LivenessCheck(f"{HERE}.gone_check", interval_s=3600))
    w.postpone_liveness()
    assert w.step(FakeCos(), now=1).status is WatchStatus.WAITING and calls == []


def test_a_liveness_check_that_fails_is_logged_and_the_wait_goes_on(caplog):
    w = watch(liveness=LivenessCheck(f"{HERE}.broken_check"), log=logging.getLogger("watch"))
    with caplog.at_level(logging.WARNING):
        assert w.step(FakeCos(), now=1).status is WatchStatus.WAITING
    assert (
        "Liveness check tests.ibm_cloud_airflow.utils.test_cos_watch.broken_check failed: VPC API down"
        in caplog.text
    )
