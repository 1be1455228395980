"""The real engine + launcher behind Schematics: a VM's process, its metadata tokens, and stop()."""

from __future__ import annotations

import os

import pytest
import requests
from ibm_cloud_sdk_core.authenticators import VPCInstanceAuthenticator
from ibm_vpc import VpcV1
from ibm_vpc import vpc_v1 as models

pytestmark = pytest.mark.sandbox


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is not alive
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_vm_gets_trusted_profile_token_and_stop_kills_it(sandbox_factory, make_client, fixtures_dir, tar_of):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)
    client = make_client(box)
    guid = box.cos_instance_crn.split(":")[7]
    ws = client.create(
        name="airflow-vm",
        variables=[
            {"name": "run_id", "value": "vm1", "type": "string"},
            {"name": "cos_instance_guid", "value": guid, "type": "string"},
        ],
    )
    client.svc.template_repo_upload(
        w_id=ws["id"], t_id=ws["template_data"][0]["id"], file=tar_of(fixtures_dir / "tf_vm")
    )
    act = client.wait(ws["id"], client.run(ws["id"], "apply"))
    assert act["status"] == "COMPLETED", act
    outputs = client.svc.get_workspace_outputs(w_id=ws["id"]).get_result()[0]["output_values"][0]
    instance_id = outputs["instance_id"]["value"]

    # the VPC API sees the instance and its boot volume
    vpc = VpcV1(authenticator=client.auth)
    vpc.set_service_url(box.endpoints["vpc"])
    [instance] = models.InstanceCollection.from_dict(vpc.list_instances().get_result()).instances
    assert instance.id == instance_id and instance.name == "vm1-vm-0"
    assert len(vpc.list_volumes().get_result()["volumes"]) == 1

    # what the VM does: metadata identity token -> trusted-profile IAM token -> COS
    auth = VPCInstanceAuthenticator(url=f"{box.endpoints['metadata']}/i/{instance_id}")
    token = auth.token_manager.get_token()
    box.ensure_bucket("vm-bucket")
    bearer = {"Authorization": f"Bearer {token}"}
    put = requests.put(f"{box.endpoints['cos']}/vm-bucket/vm1/x", data=b"1", headers=bearer, timeout=5)
    assert put.status_code == 200
    # the policy Terraform created holds: its own prefix only, upload only
    other = requests.put(f"{box.endpoints['cos']}/vm-bucket/vm2/x", data=b"1", headers=bearer, timeout=5)
    assert other.status_code == 403 and b"<Code>AccessDenied</Code>" in other.content
    read = requests.get(f"{box.endpoints['cos']}/vm-bucket/vm1/x", headers=bearer, timeout=5)
    assert read.status_code == 403

    [proc] = box.launcher.processes().values()
    assert proc["status"] == "running" and pid_alive(proc["pid"])
    box.stop()  # what Ctrl-C does
    assert not pid_alive(proc["pid"])
