"""A dataset staged in the bucket (``dataset = cos://<key>.npz``) trains with keyless COS access.

The servers' trusted profile may touch the run's own prefix only; a staged dataset lies outside it,
so the template grants one more policy, Object Reader on exactly the dataset's key
(terraform/main.tf, ``ibm_iam_trusted_profile_policy.dataset``). The sandbox's COS enforces IAM as
IBM does: without that policy the workload's download is refused (403) and the run fails.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from scripts.local_run import DEMO_BUCKET

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DATASET_KEY = "datasets/staged/digits.npz"


def staged_digits() -> bytes:
    """Digits as an .npz with x_train/y_train, made where numpy and scikit-learn are (the workload's venv)."""
    script = (
        "import io, sys, numpy as np\n"
        "from sklearn.datasets import load_digits\n"
        "d = load_digits()\n"
        "buf = io.BytesIO()\n"
        "np.savez_compressed(buf, x_train=d.images.astype('uint8'), y_train=d.target)\n"
        "sys.stdout.buffer.write(buf.getvalue())\n"
    )
    python = REPO / ".venv-workload" / "bin" / "python"
    return subprocess.run([str(python), "-c", script], capture_output=True, check=True, timeout=120).stdout


def test_a_staged_cos_dataset_trains_with_the_trusted_profile(sandbox, run_pipeline):
    sandbox.ensure_bucket(DEMO_BUCKET)
    cos = sandbox.cos_client()
    cos.put_object(Bucket=DEMO_BUCKET, Key=DATASET_KEY, Body=staged_digits())

    conf = {"dataset": f"cos://{DATASET_KEY}", "cos_auth_mode": "trusted_profile", "epochs": 1}
    (result,) = run_pipeline(sandbox, conf=conf)

    assert result["dag_run_state"] == "success", result["failures"]
    tasks = result["tasks"]
    assert tasks["wait_for_output"] == "success" and tasks["destroy"] == "success", tasks
    assert result["report"]["leak_check"]["passed"] is True
    assert sandbox.inventory.list() == [], "resources leaked"

    # the servers trained on the staged data set (what the workload says it read)
    plan = result["plan"]
    body = cos.get_object(Bucket=plan["bucket"], Key=f"{plan['prefix']}vm-0/metrics.json")["Body"]
    metrics = json.load(io.BytesIO(body.read()))
    assert metrics["dataset"] == f"cos://{DATASET_KEY}"
    # the staged object is untouched (the servers may only read it)
    assert cos.head_object(Bucket=DEMO_BUCKET, Key=DATASET_KEY)["ContentLength"] > 0
