"""Schematics' template file allowlist (sandbox/ibm/template_files.py), on its own and on a tar upload."""

from __future__ import annotations

import pytest
import requests

from ibm_cloud_airflow.hooks.schematics import build_template_tar
from sandbox.ibm.template_files import removal_reason
from tests.conftest import REPO as REPO_ROOT

# a resource whose argument reads the template file (the plan evaluates it)
MAIN = """
resource "ibm_iam_trusted_profile" "p" {
  name        = "allowlist"
  description = templatefile("${path.module}/BOOT", {})
}
"""


@pytest.mark.parametrize(
    ("path", "size", "kept"),
    [
        ("main.tf", 10, True),
        ("cloud-init.yaml.tpl", 10, True),
        ("gpu_profiles.json", 10, True),
        ("bootstrap.sh", 10, True),
        ("x.tf.json", 10, True),
        ("LICENSE", 10, True),
        ("cloud-init.yaml.tftpl", 10, False),  # the template's old name
        ("Makefile", 10, False),
        ("bundle.tar", 10, False),
        ("a.zip", 10, False),  # on the allowlist and on the removed list: removed
        ("terraform.tfstate", 10, False),
        (".terraform/modules/x.tf", 10, False),
        ("big.tf", 500 * 1024 + 1, False),
        ("diagram.png", 5_000_000, True),  # images are exempt from the size limit
    ],
)
def test_the_faq_rules(path, size, kept):
    assert (removal_reason(path, size) is None) is kept


def test_every_file_of_the_projects_template_is_kept():
    """What the pipeline uploads (the DAG's tar of terraform/) passes the filter whole."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(build_template_tar(REPO_ROOT / "terraform"))) as tar:
        dropped = {m.name: removal_reason(m.name, m.size) for m in tar.getmembers()}
    assert {name: why for name, why in dropped.items() if why} == {}
    assert "cloud-init.yaml.tpl" in dropped


def test_a_dropped_template_file_fails_the_plan_and_the_log_says_why(sandbox_factory, make_client, tar_of):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)
    client = make_client(box)
    ws = client.create(name="airflow-allowlist")
    main = MAIN.replace("BOOT", "boot.yaml.tftpl")
    client.svc.template_repo_upload(
        w_id=ws["id"],
        t_id=ws["template_data"][0]["id"],
        file=tar_of(files={"main.tf": main, "boot.yaml.tftpl": "#cloud-config\n"}),
    )
    act = client.wait(ws["id"], client.run(ws["id"], "plan"))
    assert act["status"] == "FAILED"
    log = requests.get(
        act["templates"][0]["log_url"], headers={"Authorization": f"Bearer {client.access_token()}"}
    ).text
    assert "Removed template file not on Schematics' allowlist: boot.yaml.tftpl" in log
    assert "boot.yaml.tftpl" in act["templates"][0]["log_summary"]["error"]


def test_an_allowed_template_file_renders(sandbox_factory, make_client, tar_of):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)
    client = make_client(box)
    ws = client.create(name="airflow-allowlist-ok")
    main = MAIN.replace("BOOT", "boot.yaml.tpl")
    client.svc.template_repo_upload(
        w_id=ws["id"],
        t_id=ws["template_data"][0]["id"],
        file=tar_of(files={"main.tf": main, "boot.yaml.tpl": "#cloud-config\n"}),
    )
    assert client.wait(ws["id"], client.run(ws["id"], "plan"))["status"] == "COMPLETED"
