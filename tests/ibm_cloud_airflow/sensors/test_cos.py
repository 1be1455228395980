"""CosKeySensor in each of its modes, with an in-memory COS stand-in (conftest's ``FakeCos``).

What one look finds is covered in utils/test_cos_watch.py, the trigger's loop in
triggers/test_cos.py; here, what the sensor does with it: return, wait, or raise.
"""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred
from airflow.triggers.base import TaskSuccessEvent

from ibm_cloud_airflow.exceptions import IbmCloudConfigError
from ibm_cloud_airflow.sensors.cos import STATE_KEY, CosKeySensor
from ibm_cloud_airflow.triggers.cos import CosKeyTrigger
from ibm_cloud_airflow.utils.cos_watch import LivenessCheck, WatchResult, WatchStatus
from ibm_cloud_airflow.utils.plan import plan_field_template

from ..conftest import FakeCos, FakeStore, make_context

KEYS = ["p/vm-0/_SUCCESS", "p/vm-1/_SUCCESS"]
SERVERS = ["p/vm-0/", "p/vm-1/"]


def sensor(**kw):
    args = {"task_id": "wait", "bucket_name": "b", "bucket_key": KEYS, "poke_interval": 0.01, "timeout": 60}
    args.update(kw)
    return CosKeySensor(**args)


@pytest.fixture
def cos():
    fake = FakeCos()
    with mock.patch.object(CosKeySensor, "hook", new=fake):
        yield fake


def test_sensor_defers_with_timeout(cos):
    s = sensor(stall_timeout=30)
    with pytest.raises(TaskDeferred) as exc:
        s.execute(make_context(FakeStore()))
    trig = exc.value.trigger
    assert isinstance(trig, CosKeyTrigger) and exc.value.method_name == "execute_complete"
    assert exc.value.timeout == timedelta(seconds=60)
    path, kwargs = trig.serialize()
    assert path == "ibm_cloud_airflow.triggers.cos.CosKeyTrigger"
    assert kwargs["bucket_key"] == KEYS and kwargs["stall_timeout"] == 30
    # the trigger goes on from the first look's state
    assert kwargs["state"] == s.marker_watch(make_context()).state.to_dict()
    assert CosKeyTrigger(**kwargs).serialize() == (path, kwargs)


def test_sensor_returns_at_once_when_present(cos):
    for k in KEYS:
        cos.put(k, "x")
    assert sensor().execute(make_context()) == KEYS


def test_sensor_poke_mode_failed_marker_fails_without_retry(cos, capsys):
    cos.put("p/vm-1/_FAILED", json.dumps({"error": "loss is NaN", "log_tail": "epoch 3: nan"}))
    with pytest.raises(AirflowFailException, match="loss is NaN") as err:
        sensor(deferrable=False, mode="poke").execute(make_context())
    assert "epoch 3: nan" in str(err.value)
    assert "loss is NaN" in capsys.readouterr().out


def test_sensor_reschedule_keeps_progress_state(cos):
    store = FakeStore()
    s = sensor(deferrable=False, mode="reschedule", stall_timeout=1000)
    assert s.poke(make_context(store)) is False
    first = store.data[STATE_KEY]["last_change"]
    cos.put("p/vm-0/_SUCCESS", "sha")
    # a new sensor object (next reschedule) continues from the stored state
    assert sensor(deferrable=False, mode="reschedule").poke(make_context(store)) is False
    assert store.data[STATE_KEY]["done"] == ["p/vm-0/_SUCCESS"]
    assert store.data[STATE_KEY]["last_change"] > first
    # ... and does not find the marker again: nothing changed, nothing written
    writes = len(store.writes)
    assert sensor(deferrable=False, mode="reschedule").poke(make_context(store)) is False
    assert len(store.writes) == writes


def test_sensor_stall_fails(cos):
    store = FakeStore()
    store.set(STATE_KEY, {"done": [], "progress": {"p/vm-0/progress.json": "t"}, "last_change": 0})
    with pytest.raises(AirflowFailException, match="No progress"):
        sensor(deferrable=False, stall_timeout=5).poke(make_context(store))


def test_execute_complete():
    s = sensor()
    assert s.execute_complete(make_context(), {"status": "success"}) == KEYS
    with pytest.raises(AirflowFailException, match="boom") as err:
        s.execute_complete(
            make_context(), {"status": "failed", "message": "boom", "error": "e", "log_tail": "t"}
        )
    assert str(err.value) == "boom\n--- workload log tail ---\nt"
    with pytest.raises(AirflowFailException, match="stuck"):
        s.execute_complete(make_context(), {"status": "stalled", "message": "stuck"})
    with pytest.raises(AirflowFailException, match="vm-0 is gone"):
        s.execute_complete(make_context(), {"status": "lost", "message": "vm-0 is gone", "lost": ["vm-0"]})
    with pytest.raises(AirflowSensorTimeout, match="late"):
        s.execute_complete(make_context(), {"status": "timeout", "message": "late"})
    with pytest.raises(AirflowException, match="down") as err:
        s.execute_complete(make_context(), {"status": "error", "message": "down"})
    assert not isinstance(err.value, AirflowFailException)  # COS unreachable: retried
    with pytest.raises(AirflowException, match="Unexpected trigger event"):
        s.execute_complete(make_context(), {"status": "waiting"})
    with pytest.raises(AirflowFailException, match="bucket_key is empty"):
        sensor(bucket_key="").keys  # noqa: B018


def test_timeouts_from_templates_are_numbers(cos):
    s = sensor(plan_task_id="validate")
    assert s.wait_timeout == plan_field_template("validate", "max_runtime_s")
    assert {"stall_timeout", "wait_timeout"} <= set(CosKeySensor.template_fields)
    s.bucket_name, s.bucket_key, s.watch_prefixes = "b", KEYS, None
    s.wait_timeout, s.stall_timeout = 120, 30  # what native rendering produces
    with pytest.raises(TaskDeferred) as exc:
        s.execute(make_context())
    assert exc.value.timeout == timedelta(seconds=120) and exc.value.trigger.stall_timeout == 30
    s = sensor(timeout=90, stall_timeout=None)
    with pytest.raises(TaskDeferred) as exc:
        s.execute(make_context())
    assert exc.value.timeout == timedelta(seconds=90) and exc.value.trigger.stall_timeout is None
    s = sensor(stall_timeout="1800")  # text: a template rendered without native rendering
    with pytest.raises(IbmCloudConfigError, match="render_template_as_native_obj"):
        s.execute(make_context())


def test_values_from_a_plan():
    s = CosKeySensor(task_id="wait", plan_task_id="validate")
    assert s.bucket_name == plan_field_template("validate", "bucket")
    assert s.bucket_key == plan_field_template("validate", "marker_keys")
    assert s.watch_prefixes == plan_field_template("validate", "server_prefixes")
    assert s.stall_timeout == plan_field_template("validate", "stall_timeout_s")
    assert s.wait_timeout == plan_field_template("validate", "max_runtime_s")
    assert s.lineage_inputs == plan_field_template("validate", "lineage_inputs")
    assert s.render_template_as_native_obj is True
    # given values win over the plan's
    assert CosKeySensor(task_id="w", plan_task_id="validate", bucket_name="mine").bucket_name == "mine"


# -- a liveness check (what no marker tells): by import path, in every mode -------------------------

HERE = "tests.ibm_cloud_airflow.sensors.test_cos"


def lost_when_asked(pending: list[str], *, lost: str) -> WatchResult | None:
    """A liveness check: the worker named ``lost`` (a template's value) is gone, when it is one."""
    if not lost:
        return None
    return WatchResult(WatchStatus.LOST, f"{lost} is gone; waited for {pending}", lost=(lost,), reason="gone")


def test_poking_runs_the_liveness_check_and_fails_without_retry_on_a_lost_worker(cos):
    cos.put("p/vm-0/_SUCCESS", "sha")
    s = sensor(deferrable=False, liveness_check=LivenessCheck(f"{HERE}.lost_when_asked", {"lost": "vm-1"}))
    with pytest.raises(AirflowFailException, match=r"vm-1 is gone; waited for \['p/vm-1'\]"):
        s.poke(make_context())
    fine = sensor(deferrable=False, liveness_check=LivenessCheck(f"{HERE}.lost_when_asked", {"lost": ""}))
    assert fine.poke(make_context()) is False


def test_the_liveness_check_travels_to_the_trigger_with_its_interval(cos):
    check = LivenessCheck(f"{HERE}.lost_when_asked", {"lost": "{{ ti.lost }}"}, interval_s=7)
    s = sensor(liveness_check=check)
    assert "liveness_check" in CosKeySensor.template_fields and s.liveness_check == check.to_dict()
    s.liveness_check = {**check.to_dict(), "params": {"lost": ""}}  # as rendered
    with pytest.raises(TaskDeferred) as exc:
        s.execute(make_context())
    assert LivenessCheck.from_dict(exc.value.trigger.liveness_check) == LivenessCheck(
        f"{HERE}.lost_when_asked", {"lost": ""}, interval_s=7
    )


def _as_the_triggerer_builds_it(sensor_task, context):
    """What Airflow 3.3's triggerer does for a task with start_from_trigger (triggerer_job_runner):
    build the trigger from ``start_trigger_args``, attach the task instance (which selects the
    operator's template fields that are also trigger kwargs) and render them with the context."""
    args = sensor_task.start_trigger_args
    assert sensor_task.start_from_trigger and args.next_method == "execute_complete"
    trig = CosKeyTrigger(**args.trigger_kwargs)
    trig.task_instance = mock.MagicMock(task=sensor_task, task_id=sensor_task.task_id, try_number=1)
    trig.render_template_fields(context=context)
    return trig


def _plan_sensor():
    return CosKeySensor(
        task_id="wait",
        plan_task_id="validate",
        poke_interval=0.01,
        timeout=60,
        start_from_trigger=True,
        liveness_check=LivenessCheck(
            f"{HERE}.lost_when_asked", {"lost": plan_field_template("validate", "lost")}
        ),
    )


def _context(max_runtime_s=3600.0):
    """The validate task's plan, as a task instance in the triggerer returns it."""
    ti = mock.MagicMock()
    ti.xcom_pull.return_value = {
        "bucket": "b",
        "marker_keys": KEYS,
        "server_prefixes": SERVERS,
        "lost": "",
        "stall_timeout_s": 120.0,
        "max_runtime_s": max_runtime_s,
    }
    return {"ti": ti}


async def test_started_from_the_triggerer_it_renders_the_plans_fields_typed_and_ends_the_task_there(cos):
    context = _context()
    trig = _as_the_triggerer_builds_it(_plan_sensor(), context)
    rendered = {
        "bucket_name",
        "bucket_key",
        "stall_timeout",
        "wait_timeout",
        "cos_conn_id",
        "watch_prefixes",
        "liveness_check",
    }
    assert set(trig.template_fields) == rendered
    # Rendered as Python objects: a list stays a list, a number a number, in a check's params too.
    assert trig.bucket_name == "b" and trig.bucket_key == KEYS and trig.watch_prefixes == SERVERS
    assert trig.wait_timeout == 3600.0 and trig.stall_timeout == 120.0
    assert trig.liveness_check == {
        "function": f"{HERE}.lost_when_asked",
        "params": {"lost": ""},
        "interval_s": 30,
    }
    context["ti"].xcom_pull.assert_called_with(task_ids="validate", map_indexes=-1)
    for k in KEYS:
        cos.put(k, "x")
    pushed = {}

    async def push(ti, xcoms):
        pushed.update(xcoms)

    with (
        mock.patch.object(trig, "_make_hook", return_value=cos),
        mock.patch("ibm_cloud_airflow.triggers.cos.push_xcoms", side_effect=push),
    ):
        event = await trig.run().asend(None)
    # Success ends the task in the triggerer (no worker); the keys are written through the SDK.
    assert isinstance(event, TaskSuccessEvent) and event.xcoms is None and pushed == {"return_value": KEYS}


async def test_started_from_the_triggerer_a_failure_returns_to_a_worker_to_raise(cos):
    cos.put("p/vm-1/_FAILED", json.dumps({"error": "CUDA OOM"}))
    trig = _as_the_triggerer_builds_it(_plan_sensor(), _context())
    with mock.patch.object(trig, "_make_hook", return_value=cos):
        event = await trig.run().asend(None)
    assert not isinstance(event, TaskSuccessEvent) and event.payload["status"] == "failed"
    with pytest.raises(AirflowFailException, match="CUDA OOM"):
        sensor().execute_complete(make_context(), event.payload)


async def test_started_from_the_triggerer_the_plans_timeout_is_kept(cos):
    trig = _as_the_triggerer_builds_it(_plan_sensor(), _context(max_runtime_s=0.06))
    with mock.patch.object(trig, "_make_hook", return_value=cos):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "timeout"
    with pytest.raises(AirflowSensorTimeout, match="did not all appear"):
        sensor().execute_complete(make_context(), event.payload)
