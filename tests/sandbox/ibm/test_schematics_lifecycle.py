"""A whole workspace lifecycle through the real ibm-schematics SDK against the sandbox."""

from __future__ import annotations

import time

import pytest
import requests
from ibm_cloud_sdk_core import ApiException

pytestmark = pytest.mark.sandbox


def test_lifecycle_with_fake_engine(client, fake_box):
    svc = client.svc
    created = svc.create_workspace(
        name="airflow-run1",
        location="us-south",
        type=["terraform_v1.13"],
        template_data=[
            {
                "folder": ".",
                "type": "terraform_v1.13",
                "variablestore": [
                    {"name": "run_id", "value": "run1", "type": "string"},
                    {
                        "name": "cos_hmac_secret_access_key",
                        "value": "s3cr3t",
                        "type": "string",
                        "secure": True,
                    },
                ],
            }
        ],
    )
    assert created.get_status_code() == 201
    assert created.get_headers()["Content-Type"].startswith("application/json")
    ws = created.get_result()
    w_id, t_id = ws["id"], ws["template_data"][0]["id"]
    assert w_id.startswith("us-south.workspace.airflow-run1.")
    assert ws["status"] == "DRAFT"
    assert ws["workspace_status"]["locked"] is False
    secret = ws["template_data"][0]["variablestore"][1]
    assert secret["secure"] is True and secret["value"].startswith("$SCHEMATICSSECRET$")
    assert "s3cr3t" not in str(ws)

    upload = svc.template_repo_upload(w_id=w_id, t_id=t_id, file=client_tar())
    assert upload.get_status_code() == 200
    assert svc.get_workspace(w_id=w_id).get_result()["status"] == "INACTIVE"

    # inputs: replace keeps a masked secure value's clear text, changes the others
    inputs = svc.get_workspace_inputs(w_id=w_id, t_id=t_id).get_result()
    store = inputs["variablestore"]
    store[0]["value"] = "run1b"
    replaced = svc.replace_workspace_inputs(w_id=w_id, t_id=t_id, variablestore=store)
    assert replaced.get_status_code() == 200
    assert "s3cr3t" not in replaced.get_result().__repr__()

    plan_id = client.run(w_id, "plan")
    assert len(plan_id) == 32 and int(plan_id, 16) >= 0
    assert client.wait(w_id, plan_id)["status"] == "COMPLETED"
    assert fake_box.engine.calls[-1] == ("plan", {"run_id": "run1b", "cos_hmac_secret_access_key": "s3cr3t"})

    apply_id = client.run(w_id, "apply")
    act = client.wait(w_id, apply_id)
    assert act["status"] == "COMPLETED" and act["name"] == "APPLY"
    assert act["templates"][0]["log_summary"]["resources_added"] == 1
    ws = svc.get_workspace(w_id=w_id).get_result()
    assert ws["status"] == "ACTIVE" and ws["workspace_status"]["locked"] is False
    assert len(fake_box.inventory.list()) == 1

    outputs = svc.get_workspace_outputs(w_id=w_id).get_result()
    vpc_id = outputs[0]["output_values"][0]["vpc_id"]["value"]
    assert vpc_id == fake_box.inventory.list()[0]["id"]
    resources = svc.get_workspace_resources(w_id=w_id).get_result()
    assert resources[0]["resources"][0]["resource_id"] == vpc_id

    logs = svc.get_workspace_activity_logs(w_id=w_id, activity_id=apply_id).get_result()
    log_url = logs["templates"][0]["log_url"]
    assert log_url.endswith(f"/v1/workspaces/{w_id}/runtime_data/{t_id}/log_store/actions/{apply_id}")
    text = requests.get(log_url, headers={"Authorization": f"Bearer {client.access_token()}"}, timeout=5)
    assert text.headers["Content-Type"].startswith("text/plain")
    assert "fake apply started" in text.text and "Done with the workspace action" in text.text
    via_sdk = svc.get_template_activity_log(w_id=w_id, t_id=t_id, activity_id=apply_id)
    assert "Command finished successfully." in via_sdk.get_result().text

    actions = svc.list_workspace_activities(w_id=w_id).get_result()["actions"]
    assert [a["name"] for a in actions] == ["APPLY", "PLAN"]
    base = f"/v1/workspaces/{w_id}/runtime_data/{t_id}"
    log_store = svc.get_workspace_log_urls(w_id=w_id).get_result()["runtime_data"][0]
    assert log_store["id"] == t_id and log_store["log_store_url"].endswith(f"{base}/log_store")
    state_store = svc.get_workspace_state(w_id=w_id).get_result()["runtime_data"][0]
    assert state_store["engine_name"] == "terraform" and state_store["state_store_url"].endswith(
        f"{base}/state_store"
    )

    destroy_id = client.run(w_id, "destroy")
    assert client.wait(w_id, destroy_id)["status"] == "COMPLETED"
    assert svc.get_workspace(w_id=w_id).get_result()["status"] == "INACTIVE"
    assert fake_box.inventory.list() == []
    assert svc.get_workspace_outputs(w_id=w_id).get_result()[0]["output_values"] == []

    deleted = svc.delete_workspace(w_id=w_id, refresh_token=client.refresh_token())
    assert deleted.get_status_code() == 200 and deleted.get_result() == ""
    with pytest.raises(ApiException) as err:
        svc.get_workspace(w_id=w_id)
    assert err.value.status_code == 404


def client_tar() -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b'variable "run_id" { type = string }\n'
        info = tarfile.TarInfo("main.tf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_lifecycle_with_real_engine(sandbox_factory, make_client, fixtures_dir, tar_of):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)
    client = make_client(box)
    svc = client.svc
    ws = client.create(
        name="airflow-real",
        variables=[
            {"name": "run_id", "value": "real1", "type": "string"},
            {"name": "api_secret", "value": "hunter2", "type": "string", "secure": True},
        ],
    )
    w_id, t_id = ws["id"], ws["template_data"][0]["id"]
    svc.template_repo_upload(w_id=w_id, t_id=t_id, file=tar_of(fixtures_dir / "tf_vpc"))
    meta = svc.get_workspace_inputs(w_id=w_id, t_id=t_id).get_result()["values_metadata"]
    assert {m["name"]: m["secure"] for m in meta} == {"run_id": False, "api_secret": True}

    assert client.wait(w_id, client.run(w_id, "plan"))["status"] == "COMPLETED"
    apply_id = client.run(w_id, "apply")
    assert client.wait(w_id, apply_id)["status"] == "COMPLETED"
    assert svc.get_workspace(w_id=w_id).get_result()["status"] == "ACTIVE"
    [vpc] = box.inventory.list()
    assert (vpc["kind"], vpc["name"], vpc["tags"]) == ("ibm_is_vpc", "real1-vpc", ["airflow-run:real1"])
    values = svc.get_workspace_outputs(w_id=w_id).get_result()[0]["output_values"][0]
    assert values["vpc_id"]["value"] == vpc["id"]
    assert values["secret_length"]["value"] == len("hunter2")  # the engine got the clear value
    state = svc.get_workspace_template_state(w_id=w_id, t_id=t_id).get_result()
    assert [r["address"] for r in state["resources"]] == ["ibm_is_vpc.vpc"]

    # delete with destroy_resources runs a destroy first, then the workspace is gone
    svc.delete_workspace(w_id=w_id, refresh_token=client.refresh_token(), destroy_resources=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and box.inventory.list():
        time.sleep(0.05)
    assert box.inventory.list() == []
    time.sleep(0.1)
    with pytest.raises(ApiException) as err:
        svc.get_workspace(w_id=w_id)
    assert err.value.status_code == 404


def test_failed_job_marks_workspace_failed(client, fake_box):
    ws = client.ready()
    fake_box.engine.fail.add("apply")
    act = client.wait(ws["id"], client.run(ws["id"], "apply"))
    assert act["status"] == "FAILED"
    got = client.svc.get_workspace(w_id=ws["id"]).get_result()
    assert got["status"] == "FAILED" and "fake apply failure" in got["failure_reason"]
    log = requests.get(
        act["templates"][0]["log_url"],
        headers={"Authorization": f"Bearer {client.access_token()}"},
        timeout=5,
    ).text
    assert "fake apply failure" in log


def test_busy_workspace_409_and_stop_job(client, fake_box):
    ws = client.ready()
    fake_box.engine.delay_s = 10
    apply_id = client.run(ws["id"], "apply")
    assert fake_box.engine.started.wait(5)
    got = client.svc.get_workspace(w_id=ws["id"]).get_result()
    assert got["status"] == "INPROGRESS" and got["workspace_status"]["locked"] is True
    assert client.svc.get_workspace_activity(w_id=ws["id"], activity_id=apply_id).get_result()["status"] == (
        "INPROGRESS"
    )
    with pytest.raises(ApiException) as err:
        client.run(ws["id"], "destroy")
    assert err.value.status_code == 409
    body = err.value.http_response.json()
    assert set(body) == {"requestid", "timestamp", "messageid", "message", "statuscode"}
    assert body["statuscode"] == 409 and "locked" in body["message"]
    with pytest.raises(ApiException) as err:
        client.svc.delete_workspace(w_id=ws["id"], refresh_token=client.refresh_token())
    assert err.value.status_code == 409

    stopped = client.svc.delete_workspace_activity(w_id=ws["id"], activity_id=apply_id)
    assert stopped.get_status_code() == 200
    assert client.wait(ws["id"], apply_id)["status"] == "STOPPED"
    got = client.svc.get_workspace(w_id=ws["id"]).get_result()
    assert got["status"] == "STOPPED" and got["workspace_status"]["locked"] is False


def test_list_and_update_workspace(client):
    ws = client.ready(name="airflow-upd")
    listed = client.svc.list_workspaces().get_result()
    assert listed["count"] == 1 and listed["workspaces"][0]["id"] == ws["id"]
    updated = client.svc.update_workspace(w_id=ws["id"], description="changed", tags=["a:b"]).get_result()
    assert updated["description"] == "changed" and updated["tags"] == ["a:b"]
    replaced = client.svc.replace_workspace(w_id=ws["id"], name="airflow-upd2").get_result()
    assert replaced["name"] == "airflow-upd2"


def test_engine_error_fails_the_job_with_its_message(sandbox_factory, make_client, fixtures_dir, tar_of):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)
    client = make_client(box)
    ws = client.create(name="airflow-pf", variables=[{"name": "run_id", "value": "pf", "type": "string"}])
    client.svc.template_repo_upload(
        w_id=ws["id"], t_id=ws["template_data"][0]["id"], file=tar_of(fixtures_dir / "tf_vpc")
    )
    act = client.wait(ws["id"], client.run(ws["id"], "plan"))  # api_secret is not set
    assert act["status"] == "FAILED" and "api_secret" in act["templates"][0]["log_summary"]["error"]
    got = client.svc.get_workspace(w_id=ws["id"]).get_result()
    assert got["status"] == "FAILED" and "api_secret" in got["failure_reason"]
    log = requests.get(
        act["templates"][0]["log_url"], headers={"Authorization": f"Bearer {client.access_token()}"}
    )
    assert "Error:" in log.text and "api_secret" in log.text
    assert box.inventory.list() == []


def test_refresh_and_delete_of_never_uploaded_workspace(client):
    ws = client.ready()
    act = client.wait(ws["id"], client.run(ws["id"], "refresh"))
    assert act["status"] == "COMPLETED" and act["name"] == "REFRESH"
    draft = client.create(name="airflow-draft")
    client.svc.delete_workspace(
        w_id=draft["id"], refresh_token=client.refresh_token(), destroy_resources=True
    )
    with pytest.raises(ApiException) as err:
        client.svc.get_workspace(w_id=draft["id"])
    assert err.value.status_code == 404


def test_stop_ends_running_jobs_quickly(client, fake_box):
    ws = client.ready()
    fake_box.engine.delay_s = 30
    apply_id = client.run(ws["id"], "apply")
    assert fake_box.engine.started.wait(5)
    started = time.monotonic()
    fake_box.stop()
    assert time.monotonic() - started < 3
    [activity] = [a for a in fake_box._schematics._workspaces[ws["id"]]["activities"]]
    assert activity["action_id"] == apply_id and activity["status"] == "STOPPED"
