"""Schematics operators with the hook mocked.

Mocked (autospec of SchematicsHook) because these tests pin the operator's decisions: re-attach vs
submit, what is stored before waiting, what is raised; the sandbox tests run the same paths over HTTP.
The job operators drive the job through the async hook, which here awaits the same mock.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException, TaskDeferred

from ibm_cloud_airflow.exceptions import IbmCloudApiError, IbmCloudConfigError, IbmCloudNotFoundError
from ibm_cloud_airflow.hooks import schematics as hooks_module
from ibm_cloud_airflow.hooks.schematics import SchematicsHook
from ibm_cloud_airflow.links.schematics import SchematicsWorkspaceLink
from ibm_cloud_airflow.operators import schematics as ops
from ibm_cloud_airflow.operators.schematics import (
    SchematicsApplyOperator,
    SchematicsCreateWorkspaceOperator,
    SchematicsDeleteWorkspaceOperator,
    SchematicsDestroyOperator,
    SchematicsPlanOperator,
)
from ibm_cloud_airflow.triggers.schematics import SchematicsJobTrigger
from ibm_cloud_airflow.utils import schematics_job as job_module
from ibm_cloud_airflow.utils.plan import plan_field_template
from ibm_cloud_airflow.utils.schematics_job import JobOutcome

from ..conftest import CANARY_TF_SECRET, FakeStore, make_context

TF = str(Path(__file__).parents[1] / "fixtures" / "tf_small")
AID = "b" * 32


class AsyncOf:
    """The async hook's interface over the sync mock: every call is recorded on the mock."""

    def __init__(self, sync):
        self.sync = sync

    def __getattr__(self, name):
        method = getattr(self.sync, name)

        async def call(*args, **kwargs):
            return method(*args, **kwargs)

        return call

    async def resolve_workspace(self, workspace_id, workspace_name, *, skip_draft=False):
        if workspace_id:
            return workspace_id
        return self.sync.resolve_workspace(workspace_id, workspace_name, skip_draft=skip_draft)


@pytest.fixture
def hook():
    h = mock.create_autospec(SchematicsHook, instance=True)
    h.run_command.return_value = AID
    h.get_activity.return_value = {
        "action_id": AID,
        "status": "INPROGRESS",
        "performed_at": "2026-12-01T00:00:00Z",
    }
    h.get_activity_log.return_value = "init\nplan line\nError: boom\n"
    h.get_outputs.return_value = {"vpc_id": "r006-1"}
    h.list_activities.return_value = []
    h.running_job.return_value = None
    h.get_workspace.return_value = {"id": "ws", "status": "INACTIVE", "tags": []}
    h.resolve_workspace.side_effect = lambda ws, name, skip_draft=False: ws or None
    with (
        mock.patch.object(ops.SchematicsCreateWorkspaceOperator, "hook", new=h),
        mock.patch.object(ops._SchematicsJobOperator, "hook", new=h),
        mock.patch.object(ops.SchematicsDeleteWorkspaceOperator, "hook", new=h),
        mock.patch.object(hooks_module, "SchematicsAsyncHook", side_effect=lambda *a, **k: AsyncOf(h)),
        mock.patch.object(job_module, "FIRST_POLL_AFTER_SUBMIT_S", 0.0),
    ):
        yield h


def apply_op(**kw):
    return SchematicsApplyOperator(**{"task_id": "apply", "workspace_id": "ws", "poll_interval": 0.01, **kw})


def outcome(status, **kw):
    return JobOutcome(command="apply", status=status, workspace_id="ws", activity_id=AID, **kw).to_event()


class TestJobOperators:
    def test_deferrable_submits_stores_then_defers(self, hook):
        store = FakeStore()
        ctx = make_context(store)
        op = apply_op(job_timeout=timedelta(minutes=10))
        with pytest.raises(TaskDeferred) as exc:
            op.execute(ctx)
        trig = exc.value.trigger
        assert (
            isinstance(trig, SchematicsJobTrigger) and trig.activity_id == AID and trig.workspace_id == "ws"
        )
        assert exc.value.timeout > timedelta(minutes=10)  # always set: the trigger's deadline fires first
        assert trig.deadline == pytest.approx(time.time() + 600, abs=5)
        saved = store.data["ibm_schematics_apply_job"]
        assert saved["activity_id"] == AID and saved["workspace_id"] == "ws"
        assert saved["deadline"] == trig.deadline  # a re-attached job keeps its first deadline
        hook.run_command.assert_called_once_with("apply", "ws", wait_on_lock=False)
        ctx["ti"].xcom_push.assert_any_call(
            key=SchematicsWorkspaceLink().xcom_key, value="https://cloud.ibm.com/schematics/workspaces/ws"
        )

    def test_retry_reattaches_to_running_job(self, hook):
        store = FakeStore()
        store.set(
            "ibm_schematics_apply_job",
            {"workspace_id": "ws", "activity_id": AID, "deadline": time.time() + 99},
        )
        with pytest.raises(TaskDeferred) as exc:
            apply_op().execute(make_context(store))
        assert exc.value.trigger.activity_id == AID
        assert exc.value.trigger.deadline == store.data["ibm_schematics_apply_job"]["deadline"]
        hook.run_command.assert_not_called()

    def test_completed_job_is_not_resubmitted(self, hook):
        store = FakeStore()
        store.set("ibm_schematics_apply_job", {"workspace_id": "ws", "activity_id": AID, "submitted_at": 1})
        hook.get_activity.return_value = {"action_id": AID, "status": "COMPLETED", "performed_at": "1"}
        ctx = make_context(store)
        assert apply_op().execute(ctx) == {"vpc_id": "r006-1"}  # no deferral for a finished job
        hook.run_command.assert_not_called()
        ctx["ti"].xcom_push.assert_any_call(key="outputs", value={"vpc_id": "r006-1"})

    def test_deferrable_checks_once_and_a_job_that_ended_finishes_without_the_triggerer(self, hook):
        # The check is the first poll the trigger would have made: no request is added.
        hook.get_activity.return_value = {"action_id": AID, "status": "COMPLETED", "performed_at": "1"}
        ctx = make_context(FakeStore())
        assert apply_op().execute(ctx) == {"vpc_id": "r006-1"}
        assert hook.get_activity.call_count == 1
        ctx["ti"].xcom_push.assert_any_call(key="outputs", value={"vpc_id": "r006-1"})

    def test_a_job_still_running_at_the_check_defers_with_the_next_poll_one_interval_later(self, hook):
        with pytest.raises(TaskDeferred) as exc:
            apply_op(poll_interval=30).execute(make_context(FakeStore()))
        assert hook.get_activity.call_count == 1
        assert exc.value.trigger.next_poll_at == pytest.approx(time.time() + 30, abs=5)

    def test_a_failing_check_defers_rather_than_failing_the_task(self, hook):
        hook.get_activity.side_effect = IbmCloudApiError("GET activity: HTTP 503", status_code=503)
        with pytest.raises(TaskDeferred):
            apply_op().execute(make_context(FakeStore()))

    def test_completed_but_superseded_job_is_resubmitted(self, hook):
        store = FakeStore()
        store.set("ibm_schematics_apply_job", {"workspace_id": "ws", "activity_id": "old", "submitted_at": 1})
        hook.get_activity.side_effect = lambda ws, aid, *a, **k: {
            "action_id": aid,
            "status": "COMPLETED" if aid == "old" else "INPROGRESS",
            "performed_at": "1",
        }
        hook.list_activities.return_value = [{"action_id": "d", "name": "DESTROY", "performed_at": "2"}]
        with pytest.raises(TaskDeferred):
            apply_op().execute(make_context(store))
        hook.run_command.assert_called_once()

    @pytest.mark.parametrize("status", ["FAILED", "STOPPED"])
    def test_failed_saved_job_is_resubmitted(self, hook, status):
        store = FakeStore()
        store.set("ibm_schematics_apply_job", {"workspace_id": "ws", "activity_id": "old", "submitted_at": 1})
        hook.get_activity.side_effect = lambda ws, aid, *a, **k: {
            "action_id": aid,
            "status": status if aid == "old" else "INPROGRESS",
        }
        with pytest.raises(TaskDeferred):
            apply_op().execute(make_context(store))
        assert store.data["ibm_schematics_apply_job"]["activity_id"] == AID

    def test_saved_job_gone_or_other_workspace(self, hook):
        store = FakeStore()
        store.set("ibm_schematics_apply_job", {"workspace_id": "ws", "activity_id": "old"})
        hook.get_activity.side_effect = IbmCloudNotFoundError("gone")
        with pytest.raises(TaskDeferred):
            apply_op().execute(make_context(store))
        store.set("ibm_schematics_apply_job", {"workspace_id": "other", "activity_id": "old"})
        hook.get_activity.side_effect = None
        with pytest.raises(TaskDeferred):
            apply_op().execute(make_context(store))
        assert hook.run_command.call_count == 2

    def test_no_state_store_still_works(self, hook):
        with pytest.raises(TaskDeferred):
            apply_op().execute(make_context(None))

    def test_execute_complete_paths(self, hook):
        op = apply_op()
        ctx = make_context()
        done = outcome("COMPLETED", outputs={"vpc_id": "r006-1"}, summary={"resources_added": 7})
        assert op.execute_complete(ctx, done) == {"vpc_id": "r006-1"}
        ctx["ti"].xcom_push.assert_any_call(key="outputs", value={"vpc_id": "r006-1"})
        ctx["ti"].xcom_push.assert_any_call(key="job", value={"resources_added": 7, "activity_id": AID})
        hook.get_outputs.assert_not_called()  # the outcome carries them: no request on the worker
        tail = ["init", "Error: boom"]
        with pytest.raises(AirflowException, match="ended FAILED: boom") as err:
            op.execute_complete(ctx, outcome("FAILED", log_tail=tail))
        assert not isinstance(err.value, AirflowFailException)  # apply may be retried
        with pytest.raises(AirflowException, match="ended STOPPED"):
            op.execute_complete(ctx, outcome("STOPPED"))
        with pytest.raises(IbmCloudApiError, match="re-attaches"):
            op.execute_complete(ctx, outcome("ERROR", message="503"))

    def test_a_timeout_fails_the_task_and_the_stop_came_from_the_wait(self, hook):
        # The trigger's wait stopped the job at its deadline (test_schematics_job.py): no request here.
        with pytest.raises(AirflowException, match=r"did not finish within .*a stop was requested"):
            apply_op().execute_complete(make_context(), outcome("TIMEOUT"))
        hook.stop_activity.assert_not_called()

    def test_plan_failure_is_not_retried_and_shows_log_tail(self, hook):
        op = SchematicsPlanOperator(task_id="plan", workspace_id="ws")
        with pytest.raises(AirflowFailException, match="Error: boom"):
            op.execute_complete(make_context(), outcome("FAILED", log_tail=["Error: boom"]))

    def test_sync_mode_polls_streams_and_finishes(self, hook, capsys, caplog):
        summary = {"status": "COMPLETED", "templates": [{"log_summary": {"resources_added": 7}}]}
        hook.get_activity.side_effect = [{"status": "INPROGRESS"}, summary]  # no extra read for the summary
        hook.get_activity_log.side_effect = ["a\nb\n"]  # read once, when the job has ended
        context = make_context(FakeStore())
        assert apply_op(deferrable=False).execute(context) == {"vpc_id": "r006-1"}
        # the job's summary goes to XCom for the run report
        context["ti"].xcom_push.assert_any_call(
            key="job",
            value={
                "activity_id": AID,
                "status": "COMPLETED",
                "performed_at": None,
                "started_at": None,
                "ended_at": None,
                "resources_added": 7,
                "resources_modified": None,
                "resources_destroyed": None,
            },
        )
        out = capsys.readouterr().out + caplog.text
        assert out.count("] a") == 1 and out.count("] b") == 1

    def test_sync_mode_timeout(self, hook):
        op = apply_op(deferrable=False, job_timeout=timedelta(seconds=0.05))
        with pytest.raises(AirflowException, match="did not finish"):
            op.execute(make_context(FakeStore()))
        hook.stop_activity.assert_called_once_with("ws", AID, timeout=None)

    def test_job_retries_resubmit_failed_destroy(self, hook):
        hook.get_activity.side_effect = [
            {"status": "FAILED"},
            {"status": "COMPLETED"},
        ]
        hook.run_command.side_effect = ["d1", "d2"]
        op = SchematicsDestroyOperator(
            task_id="destroy", workspace_id="ws", deferrable=False, poll_interval=0.01
        )
        store = FakeStore()
        assert op.execute(make_context(store)) == "d2"
        assert store.data["ibm_schematics_destroy_job"]["attempt"] == 1
        hook.get_activity.side_effect = None
        hook.get_activity.return_value = {"status": "FAILED"}
        hook.run_command.side_effect = ["d3", "d4"]
        with pytest.raises(AirflowException, match="ended FAILED"):
            SchematicsDestroyOperator(
                task_id="destroy", workspace_id="ws", deferrable=False, poll_interval=0.01
            ).execute(make_context(FakeStore()))

    def test_a_deferred_job_that_failed_is_submitted_again_from_execute_complete(self, hook):
        hook.run_command.return_value = "d2"
        store = FakeStore()
        op = SchematicsDestroyOperator(task_id="destroy", workspace_id="ws", poll_interval=0.01)
        failed = JobOutcome(command="destroy", status="FAILED", workspace_id="ws", activity_id="d1")
        with pytest.raises(TaskDeferred) as deferred:
            op.execute_complete(make_context(store), failed.to_event(), attempt=0)
        assert deferred.value.kwargs == {"attempt": 1} and deferred.value.trigger.activity_id == "d2"
        assert store.data["ibm_schematics_destroy_job"]["attempt"] == 1
        with pytest.raises(AirflowException, match="ended FAILED"):  # no retry left
            op.execute_complete(make_context(store), failed.to_event(), attempt=1)
        hook.run_command.assert_called_once()

    def test_each_execute_runs_one_event_loop(self, hook):
        import asyncio

        with mock.patch.object(ops.asyncio, "run", wraps=asyncio.run) as loop, pytest.raises(TaskDeferred):
            apply_op().execute(make_context(FakeStore()))
        assert loop.call_count == 1  # the start and the check share it

    def test_a_retry_attaches_to_the_job_a_killed_try_left_running(self, hook):
        # The first try's worker died after submitting and before saving the job id: the retry
        # lists the workspace's jobs and waits for that apply instead of submitting a second one.
        hook.running_job.return_value = "first-apply"
        ctx = make_context(FakeStore())
        ctx["ti"].try_number = 2
        with pytest.raises(TaskDeferred) as deferred:
            apply_op().execute(ctx)
        assert deferred.value.trigger.activity_id == "first-apply"
        hook.run_command.assert_not_called()
        first = make_context(FakeStore())
        first["ti"].try_number = 1
        with pytest.raises(TaskDeferred):
            apply_op().execute(first)
        hook.running_job.assert_called_once()  # the first try does not list: nothing can be running

    def test_on_kill_sends_stop(self, hook):
        op = apply_op(deferrable=False)
        op.on_kill()
        hook.stop_activity.assert_not_called()  # nothing submitted yet
        op._job = op._new_job()
        op._job.activity_id = AID
        op.on_kill()
        hook.stop_activity.assert_called_once_with("ws", AID, timeout=3.0)

    def test_bad_arguments(self):
        with pytest.raises(ValueError):
            apply_op(poll_interval=0)
        with pytest.raises(ValueError):
            apply_op(job_retries=-1)

    def test_apply_without_workspace_fails_clearly(self, hook):
        with pytest.raises(IbmCloudConfigError, match="no workspace to apply"):
            SchematicsApplyOperator(task_id="a", workspace_id=None).execute(make_context())

    def test_a_workspace_id_rendered_as_text_from_a_list_is_refused(self, hook):
        with pytest.raises(IbmCloudConfigError, match="render_template_as_native_obj"):
            SchematicsApplyOperator(task_id="a", workspace_id=["ws"]).execute(make_context())

    def test_the_operators_render_natively_unless_told_otherwise(self):
        assert apply_op().render_template_as_native_obj is True
        assert apply_op(render_template_as_native_obj=False).render_template_as_native_obj is False

    def test_a_plan_only_run_skips_the_apply_without_a_request(self, hook):
        op = SchematicsApplyOperator(task_id="apply", workspace_id="ws", plan_task_id="validate")
        assert op.skip == plan_field_template("validate", "plan_only")
        op.skip = True  # as rendered from the plan
        with pytest.raises(AirflowSkipException):
            op.execute(make_context())
        hook.run_command.assert_not_called()
        assert SchematicsPlanOperator(task_id="plan", plan_task_id="validate").skip is None


class TestDestroyNoops:
    @pytest.mark.parametrize("ws_id", ["", None])
    def test_no_workspace(self, hook, ws_id):
        hook.resolve_workspace.side_effect = None
        hook.resolve_workspace.return_value = None
        op = SchematicsDestroyOperator(task_id="d", workspace_id=ws_id, workspace_name="airflow-x")
        assert op.execute(make_context()) is None
        hook.run_command.assert_not_called()
        hook.resolve_workspace.assert_called_once_with(None, "airflow-x", skip_draft=True)

    def test_name_fallback_finds_workspace(self, hook):
        hook.resolve_workspace.side_effect = None
        hook.resolve_workspace.return_value = "ws"
        op = SchematicsDestroyOperator(task_id="d", workspace_id=None, workspace_name="airflow-x")
        with pytest.raises(TaskDeferred):
            op.execute(make_context())
        hook.run_command.assert_called_once_with("destroy", "ws", wait_on_lock=False)

    def test_deleted_workspace_is_nothing_to_destroy(self, hook):
        # With an id the destroy is submitted at once (no look-up first); 404 means it is gone.
        hook.run_command.side_effect = IbmCloudNotFoundError("gone")
        assert SchematicsDestroyOperator(task_id="d", workspace_id="ws").execute(make_context()) is None
        hook.get_workspace.assert_not_called()

    def test_a_job_that_runs_when_a_retry_comes_is_attached_to(self, hook):
        # The worker died between the submission and saving the job id: the retry's submission
        # finds the workspace locked by that very job and waits for it instead of queuing another.
        hook.run_command.side_effect = IbmCloudApiError("locked", status_code=409)
        hook.running_job.return_value = "first-apply"
        with pytest.raises(TaskDeferred) as deferred:
            apply_op().execute(make_context(FakeStore()))
        assert deferred.value.trigger.activity_id == "first-apply"
        hook.run_command.assert_called_once()


class TestEndedByTrigger:
    def test_the_trigger_is_told_to_end_the_task(self, hook):
        with pytest.raises(TaskDeferred) as deferred:
            apply_op(end_from_trigger=True).execute(make_context(FakeStore()))
        trigger = deferred.value.trigger
        assert trigger.end_from_trigger is True and trigger.returns_outputs is True


class TestDestroyFromTheTriggerer:
    def test_the_triggerer_renders_the_workspace_and_submits_the_destroy(self):
        op = SchematicsDestroyOperator(
            task_id="destroy",
            workspace_id="{{ ti.xcom_pull(task_ids='create_workspace', map_indexes=-1) }}",
            plan_task_id="validate",
            start_from_trigger=True,
            end_from_trigger=True,
        )
        args = op.start_trigger_args
        assert op.start_from_trigger and args.next_method == "execute_complete"
        # What Airflow 3.3's triggerer does for a task that starts there (see sensors/test_cos.py).
        trigger = SchematicsJobTrigger(**args.trigger_kwargs)
        trigger.task_instance = mock.MagicMock(task=op, task_id=op.task_id, try_number=1)
        assert set(trigger.template_fields) == {"workspace_id", "workspace_name", "ibm_conn_id"}

        class TI:
            def xcom_pull(self, task_ids, map_indexes):
                return {
                    "create_workspace": "us-south.workspace.w1",
                    "validate": {"workspace_name": "airflow-x"},
                }[task_ids]

        trigger.render_template_fields(context={"ti": TI()})
        assert (trigger.workspace_id, trigger.workspace_name) == ("us-south.workspace.w1", "airflow-x")
        assert trigger.command == "destroy" and trigger.activity_id is None and trigger.end_from_trigger

    def test_with_no_plan_and_no_workspace_the_fields_render_as_none(self):
        op = SchematicsDestroyOperator(
            task_id="destroy",
            workspace_id="{{ ti.xcom_pull(task_ids='create_workspace', map_indexes=-1) }}",
            plan_task_id="validate",
            start_from_trigger=True,
        )
        trigger = SchematicsJobTrigger(**op.start_trigger_args.trigger_kwargs)
        trigger.task_instance = mock.MagicMock(task=op, task_id=op.task_id, try_number=1)
        trigger.render_template_fields(context={"ti": mock.MagicMock(xcom_pull=lambda **kw: None)})
        assert (trigger.workspace_id, trigger.workspace_name) == (None, None)

    def test_nothing_found_in_the_triggerer_ends_the_task(self, hook):
        op = SchematicsDestroyOperator(task_id="destroy", workspace_id="", start_from_trigger=True)
        nothing = JobOutcome(command="destroy", status="NOTHING").to_event()
        assert op.execute_complete(make_context(), nothing) is None
        hook.run_command.assert_not_called()


class TestDelete:
    def test_delete_without_lease_check_sends_only_the_delete(self, hook):
        hook.delete_workspace.return_value = True
        op = SchematicsDeleteWorkspaceOperator(task_id="x", workspace_id="ws", check_leases=False)
        assert op.execute(make_context()) is True
        hook.get_workspace.assert_not_called()
        hook.delete_workspace.assert_called_once_with("ws", destroy_resources=False)

    def test_delete(self, hook):
        hook.delete_workspace.return_value = True
        assert (
            SchematicsDeleteWorkspaceOperator(task_id="x", workspace_id="ws").execute(make_context()) is True
        )
        hook.delete_workspace.assert_called_once_with("ws", destroy_resources=False)

    def test_noops(self, hook):
        assert (
            SchematicsDeleteWorkspaceOperator(task_id="x", workspace_id=None).execute(make_context()) is False
        )
        hook.get_workspace.side_effect = IbmCloudNotFoundError("gone")
        assert (
            SchematicsDeleteWorkspaceOperator(task_id="x", workspace_id="ws").execute(make_context()) is False
        )
        hook.delete_workspace.assert_not_called()

    def test_leased_workspace_is_kept(self, hook):
        hook.get_workspace.return_value = {"id": "ws", "tags": ["airflow-lease:airflow-run1"]}
        op = SchematicsDeleteWorkspaceOperator(task_id="x", workspace_id="ws", workspace_name="airflow-run1")
        assert op.execute(make_context()) is False
        hook.set_workspace_tags.assert_called_once_with("ws", [])  # the run's lease released
        hook.delete_workspace.assert_not_called()

    def test_keep_workspace_flag(self, hook):
        op = SchematicsDeleteWorkspaceOperator(task_id="x", workspace_id="ws", keep_workspace=True)
        assert op.execute(make_context()) is False
        hook.delete_workspace.assert_not_called()


class TestCreate:
    def test_creates_with_resolved_secure_variables(self, hook, ibm_env):
        hook.create_workspace.return_value = {"id": "ws-new", "status": "INACTIVE"}
        op = SchematicsCreateWorkspaceOperator(
            task_id="ws",
            workspace_name="airflow-x",
            template_dir=TF,
            variables={"run_id": "x"},
            secure_variables={
                "secret_value": "tf_secrets:password",
                "tok": "tf_secrets:extra.token",
                "e": "",
            },
            tags=["airflow-run:x"],
        )
        ctx = make_context()
        assert op.execute(ctx) == "ws-new"
        kw = hook.create_workspace.call_args.kwargs
        assert kw["secure_variables"] == {"secret_value": CANARY_TF_SECRET, "tok": "tok-123456", "e": ""}
        assert kw["variables"] == {"run_id": "x"} and kw["tags"] == ["airflow-run:x"]
        assert op.secure_variables["secret_value"] == "tf_secrets:password"  # the field keeps the reference

    @pytest.mark.parametrize(
        ("ref", "match"),
        [
            ("literal-secret-value", "not a secret reference"),
            ("tf_secrets:extra.nope", "has no extra 'nope'"),
            ("missing_conn:password", "AIRFLOW_CONN_MISSING_CONN"),
        ],
    )
    def test_bad_references(self, hook, ibm_env, ref, match):
        op = SchematicsCreateWorkspaceOperator(
            task_id="ws", workspace_name="n", template_dir=TF, secure_variables={"s": ref}
        )
        with pytest.raises(IbmCloudConfigError, match=match) as err:
            op.execute(make_context())
        assert "literal-secret-value" not in str(err.value)

    def test_secret_in_plain_variable_is_refused(self, hook, ibm_env):
        op = SchematicsCreateWorkspaceOperator(
            task_id="ws",
            workspace_name="n",
            template_dir=TF,
            variables={"leak": f"x{CANARY_TF_SECRET}"},
            secure_variables={"s": "tf_secrets:password"},
        )
        with pytest.raises(
            IbmCloudConfigError, match="'leak' contains the value of a secure variable"
        ) as err:
            op.execute(make_context())
        assert CANARY_TF_SECRET not in str(err.value)
        hook.create_workspace.assert_not_called()

    def test_adopt_existing_workspace_takes_lease(self, hook, ibm_env):
        tags = []
        hook.get_workspace.side_effect = lambda ws: {"id": ws, "status": "INACTIVE", "tags": list(tags)}
        hook.set_workspace_tags.side_effect = lambda ws, new: tags.extend(new)
        op = SchematicsCreateWorkspaceOperator(
            task_id="ws",
            workspace_name="airflow-x",
            template_dir=TF,
            variables={"run_id": "x"},
            workspace_id="shared",
        )
        assert op.execute(make_context()) == "shared"
        hook.set_workspace_tags.assert_called_once_with("shared", ["airflow-lease:airflow-x"])
        hook.upload_template.assert_called_once()
        hook.update_variables.assert_called_once_with("shared", {"run_id": "x"}, {})
        hook.create_workspace.assert_not_called()

    def test_template_fields(self):
        assert {
            "workspace_name",
            "variables",
            "secure_variables",
            "tags",
            "workspace_id",
            "ibm_conn_id",
        } <= set(SchematicsCreateWorkspaceOperator.template_fields)
        assert {"workspace_id", "workspace_name", "ibm_conn_id"} <= set(
            SchematicsDestroyOperator.template_fields
        )


def test_values_from_a_plan():
    create = SchematicsCreateWorkspaceOperator(task_id="c", template_dir=TF, plan_task_id="validate")
    assert create.workspace_name == plan_field_template("validate", "workspace_name")
    assert create.variables == plan_field_template("validate", "terraform_variables")
    assert create.secure_variables == plan_field_template("validate", "secure_variable_refs")
    assert create.location == plan_field_template("validate", "region")
    assert create.workspace_id == plan_field_template("validate", "existing_workspace_id")
    given = SchematicsCreateWorkspaceOperator(
        task_id="c", template_dir=TF, plan_task_id="validate", workspace_name="explicit"
    )
    assert given.workspace_name == "explicit"  # a value given wins over the plan
    delete = SchematicsDeleteWorkspaceOperator(task_id="d", plan_task_id="validate")
    assert delete.keep_workspace == plan_field_template("validate", "keep_workspace")


def test_hook_validate_is_offline(ibm_env):
    from ibm_cloud_airflow.hooks.cos import CosHook
    from ibm_cloud_airflow.hooks.vpc import VpcHook

    assert SchematicsHook().validate()["schematics_url"] == "https://us-south.schematics.cloud.ibm.com"
    assert VpcHook().validate()["vpc_url"] == "https://us-south.iaas.cloud.ibm.com/v1"
    assert CosHook().validate()["endpoint_url"] == "http://127.0.0.1:9"
