"""CosKeyTrigger.run() driven with asyncio, on the conftest's in-memory COS (``FakeCos``).

What one look finds is covered in utils/test_cos_watch.py, the start-from-trigger path with the
sensor in sensors/test_cos.py, the real CosHook against the sandbox in test_sandbox_integration.py.
These pin what the trigger adds: the loop, its deadline, its tolerance of COS errors, the liveness
check's first interval, the event it reports, and its kwargs.
"""

from __future__ import annotations

import json
from unittest import mock

import pytest
from airflow.triggers.base import TaskSuccessEvent

from ibm_cloud_airflow.triggers.cos import CosKeyTrigger
from ibm_cloud_airflow.utils.cos_watch import LivenessCheck, WatchResult, WatchState, WatchStatus

from ..conftest import FakeCos

KEYS = ["p/vm-0/_SUCCESS", "p/vm-1/_SUCCESS"]
HERE = "tests.ibm_cloud_airflow.triggers.test_cos"


def make(**kw) -> CosKeyTrigger:
    return CosKeyTrigger(**{"bucket_name": "b", "bucket_key": KEYS[:1], "poke_interval": 0.01, **kw})


async def first_event(trig: CosKeyTrigger, cos) -> object:
    with mock.patch.object(trig, "_make_hook", return_value=cos):
        return await trig.run().asend(None)


async def test_it_waits_then_reports_success():
    cos = FakeCos()
    looks = {"n": 0}

    def head(bucket, key):
        looks["n"] += 1
        if looks["n"] > 6:
            cos.put(KEYS[0], "x")
        return FakeCos.head(cos, bucket, key)

    event = await first_event(make(stall_timeout=100), mock.MagicMock(head=head, read_json=cos.read_json))
    assert event.payload["status"] == "success" and looks["n"] > 6
    assert WatchResult.from_event(event.payload).status is WatchStatus.DONE


async def test_a_failed_marker_is_reported_with_the_workloads_words():
    cos = FakeCos()
    cos.put("p/vm-0/_FAILED", json.dumps({"error": "boom", "log_tail": "tail", "cause": "peer_lost"}))
    event = await first_event(make(), cos)
    assert event.payload["status"] == "failed" and event.payload["log_tail"] == "tail"
    assert event.payload["failed_key"] == "p/vm-0/_FAILED" and event.payload["cause"] == "peer_lost"


async def test_cos_errors_in_a_row_end_it_with_error_and_one_success_resets_the_count():
    broken = mock.MagicMock()
    broken.head.side_effect = RuntimeError("COS 503")
    event = await first_event(make(max_consecutive_errors=2), broken)
    assert event.payload["status"] == "error" and event.payload["message"] == "COS 503"
    cos = FakeCos()
    looks = {"n": 0}

    def head(bucket, key):
        # every other look fails (never two in a row); the marker appears at the sixth
        if key == KEYS[0]:
            looks["n"] += 1
            if looks["n"] % 2:
                raise RuntimeError("COS 503")
            if looks["n"] == 6:
                cos.put(KEYS[0], "x")
        return FakeCos.head(cos, bucket, key)

    flaky = mock.MagicMock(head=head, read_json=cos.read_json)
    assert (await first_event(make(max_consecutive_errors=2), flaky)).payload["status"] == "success"
    assert looks["n"] == 6


async def test_a_hook_that_cannot_be_made_or_no_keys_is_an_error():
    trig = make()
    with mock.patch.object(trig, "_make_hook", side_effect=RuntimeError("no conn")):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "error" and event.payload["message"] == "no conn"
    event = await first_event(make(bucket_key=[""]), FakeCos())
    assert event.payload["status"] == "error" and "no marker keys" in event.payload["message"]


async def test_its_deadline_is_a_timeout():
    event = await first_event(make(wait_timeout=0.05), FakeCos())
    assert event.payload["status"] == "timeout"
    assert event.payload["message"] == "['p/vm-0/_SUCCESS'] did not all appear within 0 s"


async def test_it_goes_on_from_the_sensors_state():
    cos = FakeCos()
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 1}))
    state = WatchState(last_change=0.0, progress={"p/vm-0/progress.json": "old"}, changed={"p/vm-0": 0.0})
    # the state says the folder reported long ago: the first look finds a new version, not a stall
    event = await first_event(make(stall_timeout=5, state=state.to_dict(), wait_timeout=0.05), cos)
    assert event.payload["status"] == "timeout"
    state.progress["p/vm-0/progress.json"] = '"1"|' + str(len(json.dumps({"epoch": 1})))
    event = await first_event(make(stall_timeout=5, state=state.to_dict(), wait_timeout=5), cos)
    assert event.payload["status"] == "stalled" and "p/vm-0/progress.json" in event.payload["message"]


CHECKS: list[list[str]] = []


def all_gone(pending: list[str], **params) -> WatchResult:
    CHECKS.append(pending)
    return WatchResult(WatchStatus.LOST, f"{params['who']} gone", lost=tuple(pending), reason="gone")


@pytest.fixture
def checks():
    import importlib

    recorded = importlib.import_module(HERE).CHECKS
    recorded.clear()
    return recorded


async def test_the_liveness_check_waits_one_interval_then_ends_the_wait(checks):
    check = LivenessCheck(f"{HERE}.all_gone", {"who": "vm-0"}, interval_s=0.1).to_dict()
    event = await first_event(make(liveness_check=check, wait_timeout=0.05), FakeCos())
    assert event.payload["status"] == "timeout" and checks == []  # the sensor had just checked
    event = await first_event(make(liveness_check=check, wait_timeout=5), FakeCos())
    assert event.payload["status"] == "lost" and event.payload["message"] == "vm-0 gone"
    assert event.payload["lost"] == ["p/vm-0"] and checks == [["p/vm-0"]]


async def test_started_in_the_triggerer_success_ends_the_task_there():
    cos = FakeCos()
    cos.put(KEYS[0], "x")
    trig = make(end_from_trigger=True)
    trig.task_instance = mock.MagicMock(try_number=1)
    pushed = {}

    async def push(ti, xcoms):
        pushed.update(xcoms)

    with mock.patch("ibm_cloud_airflow.triggers.cos.push_xcoms", side_effect=push):
        event = await first_event(trig, cos)
    assert isinstance(event, TaskSuccessEvent) and pushed == {"return_value": KEYS[:1]}
    # a later try (a clear) ends on a worker: the event goes back
    trig = make(end_from_trigger=True)
    trig.task_instance = mock.MagicMock(try_number=2)
    event = await first_event(trig, cos)
    assert not isinstance(event, TaskSuccessEvent) and event.payload["status"] == "success"


def test_it_serializes_to_its_own_kwargs():
    trig = make(
        stall_timeout=30,
        wait_timeout=60,
        watch_prefixes=["p/vm-1/"],
        liveness_check=LivenessCheck("m.f", {"a": 1}).to_dict(),
        state=WatchState.fresh(now=1).to_dict(),
        end_from_trigger=True,
    )
    path, kwargs = trig.serialize()
    assert path == "ibm_cloud_airflow.triggers.cos.CosKeyTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain values only
    assert CosKeyTrigger(**kwargs).serialize() == (path, kwargs)
