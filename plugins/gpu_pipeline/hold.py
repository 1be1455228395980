"""People decide in the Airflow UI: approve a costly run, and keep or destroy a failed run's servers.

Both are Airflow's human-in-the-loop operators (``airflow.providers.standard.operators.hitl``): the
question appears under the task's "Required Actions" in the UI (and the REST API's ``hitlDetails``),
the task waits without a worker slot (Airflow 3.3 parks it in ``awaiting_input``), and when nobody
answers in time the scheduler takes the safe default: reject the run, destroy the servers.
Notifiers given to the operators are called when the question is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.exceptions import AirflowFailException

from gpu_pipeline.params import MAX_KEEP_ON_FAILURE_MINUTES

APPROVE, REJECT = "Approve", "Reject"
DESTROY_NOW = "Destroy now"


def _who(event_payload: dict[str, Any]) -> str:
    user = event_payload.get("responded_by_user")  # a HITLUser: {"id", "name"}; None on timeout
    if not user:
        return "nobody (the answer's time ran out)"
    return str(user.get("name") or user.get("id"))


class CostApprovalOperator(HITLOperator):
    """Ask a person to approve a run whose worst-case cost is above ``approval_above_usd``.

    Below the threshold (or with none) it passes at once and asks nobody. Above it, nothing is
    created until someone approves in the UI; a rejection, or no answer within
    ``approval_timeout_minutes``, fails the run before anything exists.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            subject="Approve this GPU run?",  # replaced by the run's figures when it asks
            options=[APPROVE, REJECT],
            defaults=[REJECT],
            **kwargs,
        )

    def execute(self, context: Any) -> Any:
        from gpu_pipeline.cost import worst_case

        params = context["params"]
        threshold = params.get("approval_above_usd")
        worst = worst_case(params)
        if threshold is None or worst.usd <= threshold:
            self.log.info(
                "Worst case %.2f USD is within approval_above_usd (%s): no approval needed.",
                worst.usd,
                "not set" if threshold is None else f"{threshold:g} USD",
            )
            return None
        minutes = int(params["approval_timeout_minutes"])
        self.subject = f"Approve a GPU run of up to {worst.usd:.2f} USD?"
        self.body = (
            f"Run `{context['run_id']}` of `{context['dag'].dag_id}` may cost up to **{worst.usd:.2f} USD**, "
            f"above the approval threshold of {threshold:g} USD.\n\n"
            f"Worst case: {worst.explain()}.\n\n"
            f"Nothing has been created yet. **Approve** creates the servers and trains; **Reject** ends "
            f"the run without creating anything. Without an answer within {minutes} minutes the run "
            "is rejected."
        )
        self.response_timeout = timedelta(minutes=minutes)
        self.log.warning("Waiting up to %d minutes for approval: %s", minutes, self.subject)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        answer = super().execute_complete(context, event)
        who = _who(answer)
        if answer["chosen_options"] == [APPROVE]:
            self.log.info("Approved by %s.", who)
            return answer
        raise AirflowFailException(f"approval: rejected by {who}; nothing was created.")


class HoldOnFailureOperator(HITLOperator):
    """After a failure, ask whether to destroy the servers now or keep them for debugging.

    Asks only when a watched task failed and ``minutes`` (the run's ``keep_on_failure_minutes``) is
    above 0; otherwise it passes at once. The options are "Destroy now" and "Keep for N minutes";
    without an answer within ``decision_minutes`` the servers are destroyed.

    :param watched_task_ids: the tasks whose failure leaves servers up (the apply, the wait).
    :param minutes: how long "Keep" holds (templated), at most ``MAX_KEEP_ON_FAILURE_MINUTES``.
    :param decision_minutes: how long the question waits for an answer (templated).
    """

    template_fields: Sequence[str] = (*HITLOperator.template_fields, "minutes", "decision_minutes")

    def __init__(
        self,
        *,
        watched_task_ids: list[str],
        minutes: int | str = 0,
        decision_minutes: int | str = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            subject="Keep the failed run's servers?",  # replaced by the run's details when it asks
            options=[DESTROY_NOW, "Keep"],  # the keep option's label gets its minutes when it asks
            defaults=[DESTROY_NOW],
            **kwargs,
        )
        self.watched_task_ids = watched_task_ids
        self.minutes = minutes
        self.decision_minutes = decision_minutes

    def _hold_minutes(self) -> int:
        return min(int(self.minutes or 0), MAX_KEEP_ON_FAILURE_MINUTES)

    def _set_options(self) -> None:
        # The label carries the run's minutes; set again on resume, where the parsed task has the
        # static placeholder (the answer is checked against these options).
        self.options = [DESTROY_NOW, f"Keep for {self._hold_minutes()} minutes"]

    def execute(self, context: Any) -> Any:
        minutes = self._hold_minutes()
        if minutes <= 0:
            return None
        ti = context["ti"]
        states = ti.get_task_states(
            dag_id=ti.dag_id, task_ids=self.watched_task_ids, run_ids=[ti.run_id]
        ).get(ti.run_id, {})
        # "failed", not "upstream_failed": an apply that never ran created no server.
        failed = sorted(task_id for task_id, state in states.items() if state == "failed")
        if not failed:
            return None
        decision = int(self.decision_minutes)
        self._set_options()
        self.subject = f"{', '.join(failed)} failed: destroy the servers now, or keep them {minutes} minutes?"
        self.body = (
            f"Run `{ti.run_id}` failed in {', '.join(f'`{t}`' for t in failed)}. Its servers are still up "
            "(and billed) so that someone can look at them.\n\n"
            f"**{self.options[1]}** keeps them for debugging, then destroys them. **{DESTROY_NOW}** "
            f"destroys them at once. Without an answer within {decision} minutes they are destroyed."
        )
        self.response_timeout = timedelta(minutes=decision)
        self.log.warning("%s Waiting up to %d minutes for an answer.", self.subject, decision)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        self._set_options()
        answer = super().execute_complete(context, event)
        who = _who(answer)
        if answer["chosen_options"] != [self.options[1]]:
            self.log.info("%s chose %r: cleanup proceeds.", who, DESTROY_NOW)
            return None
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        minutes = self._hold_minutes()
        until = datetime.now(UTC) + timedelta(minutes=minutes)
        self.log.warning(
            "%s chose to keep the servers: destroying them at %s.", who, until.isoformat(timespec="seconds")
        )
        self.defer(
            trigger=DateTimeTrigger(moment=until),
            method_name="hold_over",
            timeout=timedelta(minutes=minutes + 5),
        )

    def hold_over(self, context: Any, event: Any = None) -> None:
        self.log.info("Hold over; cleanup proceeds.")
