"""SchematicsHook with the SDK client mocked.

Mocked because these tests pin *which* SDK calls are made and how often (fresh refresh token per
command, no second job after a 5xx, 404 = success); the HTTP side is covered by the sandbox tests.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from unittest import mock

import pytest

from ibm_cloud_airflow.exceptions import IbmCloudApiError, IbmCloudConfigError, IbmCloudPermanentError
from ibm_cloud_airflow.hooks.base import RetryPolicy
from ibm_cloud_airflow.hooks.schematics import (
    SchematicsHook,
    build_template_tar,
    build_variablestore,
)

from ..conftest import api_error

FIXTURE_TF = Path(__file__).parents[1] / "fixtures" / "tf_small"


def resp(value):
    r = mock.MagicMock()
    r.get_result.return_value = value
    return r


@pytest.fixture
def hook(ibm_env):
    h = SchematicsHook(sleep=lambda s: None, retry_policy=RetryPolicy(lock_poll_s=0.01, lock_wait_s=1))
    h.__dict__["client"] = mock.MagicMock(name="SchematicsV1")
    h.__dict__["authenticator"] = mock.MagicMock(name="IAMAuthenticator")
    h.authenticator.token_manager.request_token.side_effect = [
        {"refresh_token": f"rt-{i}"} for i in range(50)
    ]
    return h


def test_client_is_configured_from_connection(ibm_env):
    h = SchematicsHook()
    assert h.client.service_url == "https://us-south.schematics.cloud.ibm.com"
    assert h.authenticator.token_manager.url == "https://iam.cloud.ibm.com"
    assert h.authenticator.token_manager.client_id == "bx"


class TestTemplateTar:
    def test_dereferences_and_excludes(self, tmp_path):
        (tmp_path / "tf").mkdir()
        (tmp_path / "tf" / "main.tf").write_text('variable "x" {}\n')
        (tmp_path / "outside.sh").write_text("echo hi\n")
        os.symlink(tmp_path / "outside.sh", tmp_path / "tf" / "bootstrap.sh")
        (tmp_path / "tf" / ".terraform").mkdir()
        (tmp_path / "tf" / ".terraform" / "plugin").write_text("x")
        (tmp_path / "tf" / "terraform.tfstate").write_text("{}")
        (tmp_path / "tf" / "terraform.tfstate.backup").write_text("{}")
        data = build_template_tar(tmp_path / "tf")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert sorted(members) == ["bootstrap.sh", "main.tf"]
            assert members["bootstrap.sh"].isfile()
            assert tar.extractfile("bootstrap.sh").read() == b"echo hi\n"
        assert build_template_tar(tmp_path / "tf") == data  # deterministic

    def test_errors(self, tmp_path):
        with pytest.raises(IbmCloudConfigError, match="not a directory"):
            build_template_tar(tmp_path / "missing")
        with pytest.raises(IbmCloudConfigError, match=r"no \.tf file"):
            build_template_tar(tmp_path)


def test_variablestore_types_and_secure():
    store = build_variablestore(
        {"s": "a", "n": 3, "f": 0.5, "b": True, "l": ["x", "y"], "m": {"k": 1}, "skip": None},
        {"secret": "v"},
    )
    by = {e["name"]: e for e in store}
    assert by["s"] == {"name": "s", "value": "a", "type": "string"}
    assert by["n"] == {"name": "n", "value": "3", "type": "number"}
    assert by["b"] == {"name": "b", "value": "true", "type": "bool"}
    assert by["l"]["value"] == '["x", "y"]' and by["m"]["value"] == '{"k": 1}'
    assert "skip" not in by
    assert by["secret"] == {"name": "secret", "value": "v", "type": "string", "secure": True}
    assert all("secure" not in e for n, e in by.items() if n != "secret")
    with pytest.raises(IbmCloudConfigError, match="both"):
        build_variablestore({"a": "1"}, {"a": "2"})


class TestCommands:
    def test_fresh_refresh_token_per_command(self, hook):
        hook.client.list_workspace_activities.return_value = resp({"actions": []})
        hook.client.plan_workspace_command.return_value = resp({"activityid": "p1"})
        hook.client.apply_workspace_command.return_value = resp({"activityid": "a1"})
        assert hook.plan("ws") == "p1"
        assert hook.apply("ws") == "a1"
        assert hook.client.plan_workspace_command.call_args.args == ("ws", "rt-0")
        assert hook.client.apply_workspace_command.call_args.args == ("ws", "rt-1")

    def test_5xx_after_accept_does_not_start_second_job(self, hook):
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        hook.client.list_workspace_activities.return_value = resp(
            {
                "actions": [
                    # an apply of an hour ago is not the one just submitted; the one of now is
                    {
                        "action_id": "old",
                        "name": "APPLY",
                        "performed_at": (now - timedelta(hours=1)).isoformat(),
                    },
                    {"action_id": "new", "name": "APPLY", "performed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")},
                ]
            }
        )
        hook.client.apply_workspace_command.side_effect = [api_error(502), resp({"activityid": "never"})]
        assert hook.apply("ws") == "new"
        assert hook.client.apply_workspace_command.call_count == 1

    def test_commands_do_not_list_jobs_unless_a_submit_fails(self, hook):
        hook.client.apply_workspace_command.return_value = resp({"activityid": "a1"})
        assert hook.apply("ws") == "a1"
        hook.client.list_workspace_activities.assert_not_called()

    def test_job_log_follows_the_activitys_log_url_without_a_lookup(self, hook, monkeypatch):
        fetched = []
        monkeypatch.setattr(hook, "_fetch_text", lambda url, what: fetched.append(url) or "line\n")
        activity = {"templates": [{"template_id": "t", "log_url": "https://x/log"}]}
        assert hook.get_activity_log("ws", "a1", activity) == "line"
        assert fetched == ["https://x/log"]
        assert hook.client.get_workspace_activity_logs.call_count == 0

    def test_job_log_without_the_activity_looks_the_url_up(self, hook, monkeypatch):
        hook.client.get_workspace_activity_logs.return_value = resp(
            {"templates": [{"template_id": "t", "log_url": "https://x/log"}]}
        )
        monkeypatch.setattr(hook, "_fetch_text", lambda url, what: "line\n")
        assert hook.get_activity_log("ws", "a1") == "line"
        assert hook.client.get_workspace_activity_logs.call_count == 1

    def test_5xx_before_accept_resends(self, hook):
        hook.client.list_workspace_activities.return_value = resp({"actions": []})
        hook.client.destroy_workspace_command.side_effect = [api_error(500), resp({"activityid": "d1"})]
        assert hook.destroy("ws") == "d1"
        assert hook.client.destroy_workspace_command.call_count == 2

    def test_409_is_waited_out(self, hook):
        hook.client.list_workspace_activities.return_value = resp({"actions": []})
        hook.client.plan_workspace_command.side_effect = [
            api_error(409),
            api_error(409),
            resp({"activityid": "p"}),
        ]
        assert hook.plan("ws") == "p"

    def test_409_bounded(self, hook):
        hook.retry_policy = RetryPolicy(lock_poll_s=0.4, lock_wait_s=1)
        hook.client.list_workspace_activities.return_value = resp({"actions": []})
        hook.client.plan_workspace_command.side_effect = api_error(409)
        with (
            mock.patch(
                "ibm_cloud_airflow.hooks.base.time.monotonic", side_effect=[float(i) for i in range(100)]
            ),
            pytest.raises(IbmCloudApiError, match="stayed locked"),
        ):
            hook.plan("ws")

    def test_iam_failure_is_permanent(self, hook):
        hook.client.list_workspace_activities.return_value = resp({"actions": []})
        hook.authenticator.token_manager.request_token.side_effect = api_error(
            400, "Provided API key could not be found.", url="https://iam.cloud.ibm.com/identity/token"
        )
        with pytest.raises(IbmCloudPermanentError, match="IAM rejected the API key"):
            hook.apply("ws")

    def test_no_refresh_token(self, hook):
        hook.authenticator.token_manager.request_token.side_effect = None
        hook.authenticator.token_manager.request_token.return_value = {"refresh_token": "not_supported"}
        with pytest.raises(IbmCloudPermanentError, match="refresh token"):
            hook.refresh_token()


class TestWorkspaces:
    def test_find_by_name_pages(self, hook):
        page1 = {"count": 101, "workspaces": [{"id": f"w{i}", "name": f"n{i}"} for i in range(100)]}
        page2 = {"count": 101, "workspaces": [{"id": "target", "name": "airflow-x", "created_at": "2"}]}
        hook.client.list_workspaces.side_effect = [resp(page1), resp(page2)]
        assert hook.find_workspace_by_name("airflow-x")["id"] == "target"
        assert hook.client.list_workspaces.call_args.kwargs["offset"] == 100

    def test_create_reuses_existing(self, hook):
        ws = {"id": "w1", "name": "airflow-x", "status": "INACTIVE", "template_data": [{"id": "t1"}]}
        hook.client.list_workspaces.return_value = resp({"count": 1, "workspaces": [ws]})
        hook.client.get_workspace.return_value = resp(ws)
        out = hook.create_workspace("airflow-x", FIXTURE_TF, {"run_id": "x"}, {"secret_value": "s"})
        assert out["id"] == "w1"
        hook.client.create_workspace.assert_not_called()
        hook.client.template_repo_upload.assert_called_once()
        store = hook.client.replace_workspace_inputs.call_args.kwargs["variablestore"]
        assert {"name": "secret_value", "value": "s", "type": "string", "secure": True} in store

    def test_create_new(self, hook):
        created = {"id": "w2", "name": "airflow-y", "status": "DRAFT", "template_data": [{"id": "t2"}]}
        hook.client.list_workspaces.return_value = resp({"count": 0, "workspaces": []})
        hook.client.create_workspace.return_value = resp(created)
        hook.client.get_workspace.side_effect = [
            resp({**created, "status": "SCANNING"}),
            resp({**created, "status": "INACTIVE"}),
        ]
        out = hook.create_workspace("airflow-y", FIXTURE_TF, {"run_id": "y"}, tags=["airflow-run:y"])
        assert out["status"] == "INACTIVE"
        kw = hook.client.create_workspace.call_args.kwargs
        assert (
            kw["name"] == "airflow-y" and kw["type"] == ["terraform_v1.13"] and kw["location"] == "us-south"
        )
        assert kw["tags"] == ["airflow-run:y"]
        assert hook.client.template_repo_upload.call_args.args == ("w2", "t2")

    def test_template_error(self, hook):
        hook.client.get_workspace.return_value = resp(
            {"id": "w", "status": "TEMPLATE_ERROR", "failure_reason": "bad hcl"}
        )
        with pytest.raises(IbmCloudPermanentError, match="bad hcl"):
            hook.wait_for_workspace_ready("w")

    def test_delete_and_stop_gone_is_success(self, hook):
        hook.client.delete_workspace.side_effect = api_error(404)
        assert hook.delete_workspace("w") is False
        hook.client.delete_workspace_activity.side_effect = api_error(404)
        assert hook.stop_activity("w", "a") is False
        assert hook.stop_activity("w", "a", timeout=1) is False
        hook.client.delete_workspace.side_effect = None
        hook.client.delete_workspace.return_value = resp("")
        assert hook.delete_workspace("w", destroy_resources=True) is True
        assert hook.client.delete_workspace.call_args.kwargs["destroy_resources"] == "true"

    def test_outputs(self, hook):
        hook.client.get_workspace_outputs.return_value = resp(
            [
                {
                    "id": "t",
                    "output_values": [
                        {
                            "vpc_id": {"value": "r006-1", "type": "string"},
                            "key": {"value": "s3cr3t", "sensitive": True},
                            "ips": {"value": ["10.0.0.1"]},
                        }
                    ],
                }
            ]
        )
        assert hook.get_outputs("w") == {"vpc_id": "r006-1", "key": "<sensitive>", "ips": ["10.0.0.1"]}
        assert hook.get_outputs("w", include_sensitive=True)["key"] == "s3cr3t"

    def test_activity_log_follows_log_url(self, hook):
        hook.client.get_workspace_activity_logs.return_value = resp(
            {"templates": [{"template_id": "t", "log_url": "https://x/log"}]}
        )
        hook.client.http_client.get.return_value = mock.MagicMock(status_code=200, text="line1\nline2\n")
        assert hook.get_activity_log("w", "a") == "line1\nline2"
        assert hook.client.http_client.get.call_args.args == ("https://x/log",)

    def test_resolve_workspace_by_id_by_name_and_draft(self, hook):
        assert hook.resolve_workspace("us-south.workspace.w", "ignored") == "us-south.workspace.w"
        hook.client.list_workspaces.assert_not_called()  # an id costs no request
        hook.client.list_workspaces.return_value = resp({"workspaces": [{"id": "w1", "name": "airflow-x"}]})
        hook.client.get_workspace.return_value = resp({"id": "w1", "status": "DRAFT"})
        assert hook.resolve_workspace(None, "airflow-x") == "w1"
        assert hook.resolve_workspace(None, "airflow-x", skip_draft=True) is None
        hook.client.get_workspace.return_value = resp({"id": "w1", "status": "INACTIVE"})
        assert hook.resolve_workspace(None, "airflow-x", skip_draft=True) == "w1"
        assert hook.resolve_workspace(None, "airflow-other") is None
        assert hook.resolve_workspace(None, None) is None


def test_activity_log_fallbacks_and_errors(hook):
    hook.client.get_workspace_activity_logs.return_value = resp({"templates": [{"template_id": "t"}]})
    hook.client.get_template_activity_log.return_value = resp(mock.MagicMock(text="from template endpoint\n"))
    assert hook.get_activity_log("w", "a") == "from template endpoint"
    hook.client.get_workspace_activity_logs.return_value = resp({"templates": [{"log_url": "/v1/log/x"}]})
    hook.client.http_client.get.return_value = mock.MagicMock(status_code=404, text="", headers={})
    with pytest.raises(Exception, match="not found"):
        hook.get_activity_log("w", "a")
    assert hook.client.http_client.get.call_args.args == (
        "https://us-south.schematics.cloud.ibm.com/v1/log/x",
    )
