"""CosKeySensor and CosKeyTrigger with an in-memory COS stand-in.

The stand-in implements the three CosHook methods the check uses (head/read_json/read_text); the
real CosHook is covered over HTTP in test_hook_cos.py and against the sandbox.
"""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred
from airflow.triggers.base import TaskSuccessEvent

from ibm_cloud_airflow.hooks.base import IbmCloudConfigError
from ibm_cloud_airflow.sensors.cos import CosKeySensor
from ibm_cloud_airflow.triggers.cos import CosKeyTrigger, check_markers, new_state
from ibm_cloud_airflow.utils.plan import plan_field

from ..conftest import FakeStore, make_context

KEYS = ["p/vm-0/_SUCCESS", "p/vm-1/_SUCCESS"]


class FakeCos:
    def __init__(self):
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.version = 0

    def put(self, key, body):
        self.version += 1
        self.objects[key] = (body.encode() if isinstance(body, str) else body, self.version)

    def head(self, bucket, key):
        if key not in self.objects:
            return None
        body, ver = self.objects[key]
        return {"ETag": f'"{ver}"', "ContentLength": len(body)}

    def read_text(self, bucket, key):
        return self.objects[key][0].decode() if key in self.objects else None

    def read_json(self, bucket, key):
        text = self.read_text(bucket, key)
        return None if text is None else json.loads(text)


def test_check_success_progress_and_failed():
    cos = FakeCos()
    state = new_state(now=0)
    assert check_markers(cos, "b", KEYS, state, stall_timeout=100, now=1)["status"] == "waiting"
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 1, "epochs": 3, "metrics": {"loss": 0.51234}}))
    res = check_markers(cos, "b", KEYS, state, stall_timeout=100, now=50)
    assert res["progress"] == ["p/vm-0/progress.json: epoch 1/3 loss=0.5123"]
    assert check_markers(cos, "b", KEYS, state, stall_timeout=100, now=60)["progress"] == []  # logged once
    cos.put("p/vm-0/_SUCCESS", "sha")
    assert check_markers(cos, "b", KEYS, state, stall_timeout=100, now=70)["status"] == "waiting"
    assert state["done"] == ["p/vm-0/_SUCCESS"]
    cos.put("p/vm-1/_FAILED", json.dumps({"error": "CUDA OOM", "log_tail": ["a", "b"]}))
    res = check_markers(cos, "b", KEYS, state, stall_timeout=100, now=80)
    assert res["status"] == "failed" and res["error"] == "CUDA OOM" and res["log_tail"] == "a\nb"
    assert res["key"] == "p/vm-1/_FAILED"


def test_check_all_present_and_stall():
    cos = FakeCos()
    state = new_state(now=0)
    # Before the first progress report the servers are booting: no stall yet, however long.
    assert check_markers(cos, "b", KEYS, state, stall_timeout=10, now=1000)["status"] == "waiting"
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 1, "epochs": 3}))
    assert check_markers(cos, "b", KEYS, state, stall_timeout=10, now=1001)["status"] == "waiting"
    assert check_markers(cos, "b", KEYS, state, stall_timeout=10, now=1012)["status"] == "stalled"
    cos.objects.pop("p/vm-0/progress.json")
    for k in KEYS:
        cos.put(k, "x")
    assert check_markers(cos, "b", KEYS, new_state(now=0), stall_timeout=10, now=5)["status"] == "success"
    assert (
        check_markers(cos, "b", KEYS, new_state(now=0), stall_timeout=None, now=10**6)["status"] == "success"
    )


# -- the modes' contracts (docs/architecture.md): multi_worker awaits the chief's marker only ----

SERVERS = ["p/vm-0/", "p/vm-1/"]


def test_multi_worker_a_workers_failed_marker_fails_the_wait():
    cos = FakeCos()
    cos.put("p/vm-1/_FAILED", json.dumps({"error": "worker 1: CUDA error"}))
    res = check_markers(cos, "b", KEYS[:1], new_state(now=0), stall_timeout=None, now=1, watch=SERVERS)
    assert res["status"] == "failed" and res["key"] == "p/vm-1/_FAILED"
    # Without the watched folders the same wait would not see it: the folder list is what matters.
    res = check_markers(cos, "b", KEYS[:1], new_state(now=0), stall_timeout=None, now=1)
    assert res["status"] == "waiting"


def test_multi_worker_succeeds_on_the_chiefs_marker_alone():
    cos = FakeCos()
    cos.put("p/vm-1/progress.json", json.dumps({"epoch": 3, "epochs": 3, "status": "finished"}))
    cos.put("p/vm-0/_SUCCESS", "sha")
    res = check_markers(cos, "b", KEYS[:1], new_state(now=0), stall_timeout=10, now=1, watch=SERVERS)
    assert res["status"] == "success"


def test_every_server_has_its_own_stall_clock():
    cos = FakeCos()
    state = new_state(now=0)
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 1, "epochs": 9}))
    cos.put("p/vm-1/progress.json", json.dumps({"epoch": 1, "epochs": 9}))
    assert check_markers(cos, "b", KEYS, state, stall_timeout=10, now=1, watch=SERVERS)["status"] == "waiting"
    # vm-0 keeps reporting; vm-1 went silent: a stall, though the run as a whole moves.
    for now in (6, 12):
        cos.put("p/vm-0/progress.json", json.dumps({"epoch": now, "epochs": 9}))
        res = check_markers(cos, "b", KEYS, state, stall_timeout=10, now=now, watch=SERVERS)
    assert res["status"] == "stalled" and "p/vm-1/progress.json" in res["message"], res


def test_a_worker_that_finished_is_not_a_stall_while_the_chief_publishes():
    cos = FakeCos()
    state = new_state(now=0)
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 3, "epochs": 3}))
    cos.put("p/vm-1/progress.json", json.dumps({"epoch": 3, "epochs": 3, "status": "finished"}))
    assert (
        check_markers(cos, "b", KEYS[:1], state, stall_timeout=10, now=1, watch=SERVERS)["status"]
        == "waiting"
    )
    # The chief is still silent past the stall timeout (it would be a stall) ...
    res = check_markers(cos, "b", KEYS[:1], state, stall_timeout=10, now=12, watch=SERVERS)
    assert res["status"] == "stalled" and "p/vm-0/progress.json" in res["message"]
    # ... but a finished worker alone never is.
    cos.put("p/vm-0/progress.json", json.dumps({"epoch": 3, "epochs": 3, "note": "publishing"}))
    assert (
        check_markers(cos, "b", KEYS[:1], state, stall_timeout=10, now=13, watch=SERVERS)["status"]
        == "waiting"
    )


def test_failed_marker_not_json():
    cos = FakeCos()
    cos.put("p/vm-0/_FAILED", "plain text error")
    res = check_markers(cos, "b", KEYS[:1], new_state(now=0), stall_timeout=None, now=1)
    assert res["status"] == "failed" and res["error"] == "plain text error"


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
    first = store.data["ibm_cos_sensor_progress"]["last_change"]
    # a new sensor object (next reschedule) continues from the stored state
    assert sensor(deferrable=False, mode="reschedule").poke(make_context(store)) is False
    assert store.data["ibm_cos_sensor_progress"]["last_change"] == first


def test_sensor_stall_fails(cos):
    store = FakeStore()
    store.set(
        "ibm_cos_sensor_progress", {"done": [], "progress": {"p/vm-0/progress.json": "t"}, "last_change": 0}
    )
    with pytest.raises(AirflowFailException, match="No progress"):
        sensor(deferrable=False, stall_timeout=5).poke(make_context(store))


def test_execute_complete():
    s = sensor()
    assert s.execute_complete(make_context(), {"status": "success"}) == KEYS
    with pytest.raises(AirflowFailException, match="boom"):
        s.execute_complete(
            make_context(), {"status": "failed", "message": "boom", "error": "e", "log_tail": "t"}
        )
    with pytest.raises(AirflowFailException, match="stuck"):
        s.execute_complete(make_context(), {"status": "stalled", "message": "stuck"})
    with pytest.raises(AirflowException, match="down"):
        s.execute_complete(make_context(), {"status": "error", "message": "down"})
    with pytest.raises(AirflowFailException, match="bucket_key is empty"):
        sensor(bucket_key="").keys  # noqa: B018


async def test_trigger_run_waits_then_succeeds(cos):
    trig = CosKeyTrigger(bucket_name="b", bucket_key=KEYS[:1], poke_interval=0.01, stall_timeout=100)
    calls = {"n": 0}

    def head(bucket, key):
        calls["n"] += 1
        if calls["n"] > 6:
            cos.put(KEYS[0], "x")
        return FakeCos.head(cos, bucket, key)

    with mock.patch.object(
        trig, "_make_hook", return_value=mock.MagicMock(head=head, read_json=cos.read_json)
    ):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "success"


async def test_trigger_failed_and_errors(cos):
    cos.put("p/vm-0/_FAILED", json.dumps({"error": "boom", "log_tail": "tail"}))
    trig = CosKeyTrigger(bucket_name="b", bucket_key=KEYS[:1], poke_interval=0.01)
    with mock.patch.object(trig, "_make_hook", return_value=cos):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "failed" and event.payload["log_tail"] == "tail"
    broken = mock.MagicMock()
    broken.head.side_effect = RuntimeError("COS 503")
    trig = CosKeyTrigger(bucket_name="b", bucket_key=KEYS[:1], poke_interval=0.01, max_consecutive_errors=2)
    with mock.patch.object(trig, "_make_hook", return_value=broken):
        event = await trig.run().asend(None)
    assert event.payload == {"status": "error", "message": "COS 503"}
    trig = CosKeyTrigger(bucket_name="b", bucket_key=KEYS[:1], poke_interval=0.01)
    with mock.patch.object(trig, "_make_hook", side_effect=RuntimeError("no conn")):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "error"


def test_timeouts_from_templates_are_numbers(cos):
    s = sensor(wait_timeout="{{ params.max_runtime_minutes * 60 }}", stall_timeout="{{ x }}")
    assert {"stall_timeout", "wait_timeout"} <= set(CosKeySensor.template_fields)
    s.wait_timeout, s.stall_timeout = 120, 30  # what native rendering produces
    with pytest.raises(TaskDeferred) as exc:
        s.execute(make_context())
    assert exc.value.timeout == timedelta(seconds=120) and exc.value.trigger.stall_timeout == 30
    s = sensor(wait_timeout=90, stall_timeout=None)
    with pytest.raises(TaskDeferred) as exc:
        s.execute(make_context())
    assert exc.value.timeout == timedelta(seconds=90) and exc.value.trigger.stall_timeout is None
    s = sensor(stall_timeout="1800")  # text: a template rendered without native rendering
    with pytest.raises(IbmCloudConfigError, match="render_template_as_native_obj"):
        s.execute(make_context())


def test_values_from_a_plan():
    s = CosKeySensor(task_id="wait", plan_task_id="validate", outputs_task_id="apply")
    assert s.bucket_name == plan_field("validate", "bucket")
    assert s.bucket_key == plan_field("validate", "marker_keys")
    assert s.watch_prefixes == plan_field("validate", "server_prefixes")
    assert s.server_name_prefix == plan_field("validate", "slug")
    assert s.stall_timeout == plan_field("validate", "stall_timeout_s")
    assert s.wait_timeout == plan_field("validate", "max_runtime_s")
    assert s.trusted_profile_id == plan_field("apply", "trusted_profile_id")
    assert s.render_template_as_native_obj is True


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
        task_id="wait", plan_task_id="validate", poke_interval=0.01, timeout=60, start_from_trigger=True
    )


def _context(max_runtime_s=3600.0):
    """The validate task's plan, as a task instance in the triggerer returns it."""
    ti = mock.MagicMock()
    ti.xcom_pull.return_value = {
        "bucket": "b",
        "marker_keys": KEYS,
        "server_prefixes": SERVERS,
        "slug": "run-1",
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
        "server_name_prefix",
        "watch_prefixes",
    }
    assert set(trig.template_fields) == rendered
    # Rendered as Python objects: a list stays a list, a number a number.
    assert trig.bucket_name == "b" and trig.bucket_key == KEYS and trig.watch_prefixes == SERVERS
    assert trig.wait_timeout == 3600.0 and trig.stall_timeout == 120.0 and trig.server_name_prefix == "run-1"
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
