"""How long each phase of a run took, from timestamps that the run owns.

The run report does not use Airflow's task durations for its phases. A task that starts in the
triggerer (``start_from_trigger``: the COS sensor, the destroy) keeps the previous attempt's
``end_date`` after a clear, and its duration turns negative:

* ``clear_task_instances`` (``airflow/models/taskinstance.py``) resets the state but not
  ``end_date``;
* ``TaskInstance.defer_task`` (same file), which the scheduler calls for such a task, sets a new
  ``start_date`` and leaves ``end_date`` alone;
* when the trigger ends the task, ``handle_event_submit`` (``airflow/models/trigger.py``) calls
  ``TaskInstance.set_state``, which keeps an existing end date
  (``self.end_date = self.end_date or current_time``) and stores
  ``duration = end_date - start_date`` (Airflow 3.3.2).

So each phase is measured between two timestamps that the run's own systems recorded:

=========  ==========================================  =========================================
phase      starts                                      ends
=========  ==========================================  =========================================
queue      the DAG run's ``run_after``                 the DAG run's ``start_date`` (first try)
plan       the plan job's Terraform start (Schematics)  the plan job's Terraform end
apply      the apply job's Terraform start             the apply job's Terraform end
train      the apply job's end (servers up)            the last server's marker (COS)
destroy    the destroy job's Terraform start           the destroy job's Terraform end
=========  ==========================================  =========================================

A phase whose timestamps are missing (not reached) is None. A phase that would come out negative
(two clocks that disagree) is None too, and ``problems`` says why: nothing is clamped silently.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

PHASES = ("queue", "plan", "apply", "train", "destroy")


def as_time(value: Any) -> datetime | None:
    """An aware UTC datetime from a datetime or an RFC 3339 text (``Z`` or an offset); else None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _job(job: dict[str, Any] | None) -> tuple[Any, Any]:
    job = job or {}
    return job.get("started_at"), job.get("ended_at")


def run_phases(
    *,
    run_after: Any,
    run_started: Any,
    cleared: bool,
    plan_job: dict[str, Any] | None,
    apply_job: dict[str, Any] | None,
    destroy_job: dict[str, Any] | None,
    work_ended: Any,
) -> dict[str, Any]:
    """``{"phases_s": {phase: seconds | None}, "phase_times": {phase: {"start", "end"}},
    "problems": {phase: why it is None although both ends are known}}``.

    ``cleared``: the run was cleared at least once; its ``start_date`` is then the clear's, and the
    queue phase is not measured. ``work_ended``: when the last server wrote its marker.
    """
    spans: dict[str, tuple[Any, Any]] = {
        "queue": (run_after, None if cleared else run_started),
        "plan": _job(plan_job),
        "apply": _job(apply_job),
        "train": (_job(apply_job)[1], work_ended),
        "destroy": _job(destroy_job),
    }
    seconds: dict[str, float | None] = {}
    times: dict[str, dict[str, str | None]] = {}
    problems: dict[str, str] = {}
    for phase in PHASES:
        start, end = (as_time(v) for v in spans[phase])
        times[phase] = {
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
        }
        if start is None or end is None:
            seconds[phase] = None
            continue
        span = (end - start).total_seconds()
        if span < 0:
            seconds[phase] = None
            problems[phase] = (
                f"ends {-span:.3f} s before it starts ({times[phase]['end']} < {times[phase]['start']}): "
                "the clocks of the systems that recorded them disagree"
            )
        else:
            seconds[phase] = round(span, 3)
    if cleared:
        problems["queue"] = "not measured: the run was cleared, so its start date is the clear's"
    return {"phases_s": seconds, "phase_times": times, "problems": problems}


def task_durations(crumbs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Airflow's task summaries with an impossible (negative) duration replaced by None and a note.

    A negative duration is Airflow's stale ``end_date`` after a clear (see the module docstring).
    """
    out = {}
    for name, summary in crumbs.items():
        duration = summary.get("duration_s")
        if isinstance(duration, int | float) and duration < 0:
            summary = {
                **summary,
                "duration_s": None,
                "duration_note": (
                    f"Airflow recorded {duration:.3f} s: a task that starts in the triggerer keeps the "
                    "previous attempt's end_date after a clear (TaskInstance.set_state, Airflow 3.3.2); "
                    "see phases_s for the run's own measurements"
                ),
            }
        out[name] = summary
    return out
