"""Champion/challenger: keep the better of the current champion and a newly trained model.

The champion lives under ``<output_prefix>/<dag_id>/champion/`` in the runs' bucket: ``model.keras``
and ``metrics.json`` (server-side copies of the winning run's), ``champion.json`` (which run, its
metrics, when and why it won) and ``decisions/<run slug>.json`` (every comparison, won or lost).
Only metrics are compared: the promote task needs no TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

# The metric a model is ranked by, and which way is better.
METRIC = "test_accuracy"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    challenger: dict[str, Any]
    champion_before: dict[str, Any] | None
    decided_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(challenger: dict[str, Any], champion: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether ``challenger`` (a model event's extra) should replace ``champion`` (champion.json)."""
    new = (challenger.get("metrics") or {}).get(METRIC)
    if new is None:
        return False, f"the new model has no {METRIC} in its metrics; the champion is kept"
    if champion is None:
        return True, f"no champion yet: the first model ({METRIC} {new:.4f}) becomes the champion"
    if champion.get("run_id") == challenger.get("run_id"):
        return False, f"run {challenger['run_id']} is already the champion"
    old = (champion.get("metrics") or {}).get(METRIC)
    if old is None or new > old:
        return True, f"{METRIC} {new:.4f} beats the champion's {old if old is None else f'{old:.4f}'}"
    return False, f"{METRIC} {new:.4f} does not beat the champion's {old:.4f} (ties keep the champion)"


def promote(challenger: dict[str, Any], *, cos_conn_id: str) -> Decision:
    """Compare, copy the model when it wins, and record the decision either way (idempotent)."""
    from ibm_cloud_airflow.hooks.cos import CosHook

    cos = CosHook(cos_conn_id=cos_conn_id)
    bucket, prefix = challenger["bucket"], challenger["champion_prefix"]
    champion = cos.read_json(bucket, f"{prefix}champion.json")
    promoted, reason = compare(challenger, champion)
    decision = Decision(
        promoted=promoted,
        reason=reason,
        challenger=challenger,
        champion_before=champion,
        decided_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    if promoted:
        # The model first, the record last: a champion.json never names a model that is not there.
        cos.copy(bucket, challenger["model_key"], f"{prefix}model.keras")
        cos.copy(bucket, challenger["metrics_key"], f"{prefix}metrics.json")
        record = {
            key: challenger.get(key)
            for key in ("dag_id", "run_id", "run_slug", "model_uri", "metrics", "cost", "placement")
        }
        record |= {"promoted_at": decision.decided_at, "reason": reason}
        cos.upload_bytes(bucket, f"{prefix}champion.json", json.dumps(record, indent=2, default=str))
    cos.upload_bytes(
        bucket,
        f"{prefix}decisions/{challenger['run_slug']}.json",
        json.dumps(decision.to_dict(), indent=2, default=str),
    )
    return decision
