"""The Airflow UI as its users use it: Chromium (Playwright) against ``make airflow``'s deployment.

Everything is real: the api-server serves the React UI, the scheduler, triggerer and LocalExecutor
run the DAG against the sandbox, whose simulated servers run the real training job. The tests run
in file order and share one deployment; each pipeline run they start is checked for leaks.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import Any

import pytest
from gpu_pipeline.cost import worst_case
from gpu_pipeline.hold import APPROVE, DESTROY_NOW, REJECT
from gpu_pipeline.params import ADVANCED, DEBUG, LIMITS, PARAMS, SEVERAL_SERVERS
from playwright.sync_api import Page, expect

from scripts.local_airflow import TERMINAL_RUN_STATES
from scripts.local_run import DAG_ID
from tests.e2e.airflow_api import SETTLED_S
from tests.ui.conftest import save_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

RUN_TIMEOUT_S = 1200  # one pipeline run on a loaded 2-core machine (about 3 minutes alone)
WORKSPACE_CREATE = "schematics POST /v1/workspaces"
TAGS = ("gpu", "ibm-cloud", "schematics", "tensorflow")
SECTIONS = (SEVERAL_SERVERS, LIMITS, ADVANCED, DEBUG)
ENUMS = [name for name, p in PARAMS.items() if "enum" in p.schema]
# A run's task states when everything worked: the failure-only task is skipped (the verdict
# succeeds and announces the model).
ON_SUCCESS_SKIPPED = {"hold_on_failure"}
MODEL_ASSET = f"{DAG_ID}.model"
CONNECTIONS = {"ibm_cloud_default": "ibm_cloud", "ibm_cos_default": "ibm_cos"}


# -- helpers -----------------------------------------------------------------------------------------
def open_trigger_form(page: Page) -> Any:
    page.goto(f"/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Run Parameters")).to_be_visible()
    return dialog


def field(dialog: Any, name: str) -> Any:
    """The input that holds param ``name`` (for an enum, the hidden input behind the choice)."""
    return dialog.locator(f"[name=element_{name}]")


def is_json_or_list(param: Any) -> bool:
    """An object or array param (null-able or not): the form draws a JSON editor or a multi-choice."""
    types = param.schema.get("type")
    types = set(types) if isinstance(types, list) else {types}
    return isinstance(param.value, dict | list) or bool(types & {"array", "object"})


def trigger_button(dialog: Any) -> Any:
    return dialog.get_by_role("button", name="Trigger", exact=True)


def run_ids(af: Any) -> set[str]:
    return {r["dag_run_id"] for r in af.dag_runs(DAG_ID)}


def wait_for_new_runs(af: Any, before: set[str], count: int = 1, timeout_s: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = sorted(run_ids(af) - before)
        if len(new) >= count:
            return new
        time.sleep(1)
    raise AssertionError(f"no new run appeared within {timeout_s:.0f} s")


def wait_until_done(af: Any, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> dict[str, str]:
    """The run's final state and task states, once it has ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        af.check_alive()
        run = af.api("GET", f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
        if run["state"] in TERMINAL_RUN_STATES:
            tis = af.api("GET", f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances")
            return {"run": run["state"], **{t["task_id"]: t["state"] for t in tis["task_instances"]}}
        time.sleep(3)
    raise AssertionError(f"{run_id} did not end within {timeout_s:.0f} s; logs in {af.log_dir}")


def run_api(run_id: str) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"


def run_url(run_id: str, task_id: str | None = None) -> str:
    url = f"/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}"
    return f"{url}/tasks/{task_id}" if task_id else url


def open_graph(page: Page, run_id: str) -> None:
    """The run's graph with the training task group open (the DAG is that one group)."""
    page.goto(run_url(run_id))
    page.get_by_role("button", name=re.compile("Show Graph")).click()
    expect(graph_node(page, "training")).to_be_visible()
    page.get_by_role("button", name="Expand all task groups").click()
    expect(graph_node(page, "run_verdict")).to_be_visible()


def show_whole_graph(page: Page) -> None:
    """The graph alone, zoomed to fit: a chain of 11 tasks is wide."""
    page.get_by_role("button", name="Collapse Details Panel").click()
    page.locator(".react-flow__controls-fitview").click()


def graph_node(page: Page, task_id: str) -> Any:
    return page.locator(f'.react-flow__node[data-id="{task_id}"]')


def xcom(af: Any, run_id: str, task_id: str) -> Any:
    path = f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
    return af.api("GET", f"{path}/xcomEntries/return_value")["value"]


def workspace_creates(box: Any) -> int:
    return box.request_counts().get(WORKSPACE_CREATE, 0)


def live_resources(box: Any) -> list[str]:
    return [f"{r['kind']} {r['name']}" for r in box.inventory.list()]


def trigger_with(page: Page, af: Any, values: dict[str, Any]) -> str:
    """Trigger a run from the form with ``values`` typed into the "Time, budget and cleanup" fields."""
    before = run_ids(af)
    dialog = open_trigger_form(page)
    dialog.get_by_role("button", name=LIMITS).click()
    for name, value in values.items():
        field(dialog, name).fill(str(value))
        field(dialog, name).blur()
    trigger_button(dialog).click()
    (run_id,) = wait_for_new_runs(af, before)
    conf = af.api("GET", run_api(run_id))["conf"]
    assert {name: conf[name] for name in values} == values, conf  # the form sent what was typed
    return run_id


def wait_for_question(af: Any, run_id: str, task_id: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Wait until ``task_id`` has been asking its human-in-the-loop question for ``SETTLED_S``.

    Airflow 3.3 fails a task answered within a moment of its pause (tests/e2e/airflow_api.py says
    why); a person reads the question first.
    """
    deadline = time.monotonic() + timeout_s
    asking_since = None
    while time.monotonic() < deadline:
        af.check_alive()
        state = af.api("GET", f"{run_api(run_id)}/taskInstances/{task_id}")["state"]
        if state == "awaiting_input":
            asking_since = asking_since or time.monotonic()
            if time.monotonic() - asking_since >= SETTLED_S:
                return
        else:
            asking_since = None
        assert state not in ("success", "failed", "skipped", "upstream_failed"), (task_id, state)
        time.sleep(1)
    raise AssertionError(f"{task_id} of {run_id} asked nothing within {timeout_s:.0f} s")


def open_required_actions(page: Page, run_id: str) -> Any:
    """The run page's "Required Actions" drawer, with the run's one pending question selected."""
    page.goto(run_url(run_id))
    page.get_by_role("button", name="Required Actions").click()
    drawer = page.get_by_role("dialog", name="Required Actions")
    expect(drawer.get_by_role("heading", name="Pending required actions (1)")).to_be_visible()
    return drawer


RUNS: dict[str, str] = {}  # what one test started and a later one checks


# -- the DAG list and docs ---------------------------------------------------------------------------
def test_dag_list_shows_the_dag_with_its_tags_description_and_docs(page: Page) -> None:
    page.goto("/dags")
    expect(page.get_by_role("link", name=DAG_ID).first).to_be_visible()
    for tag in TAGS:
        expect(page.get_by_role("link", name=tag, exact=True).first).to_be_visible()

    page.goto(f"/dags/{DAG_ID}/details")
    expect(page.get_by_text("Train a TensorFlow model on short-lived IBM Cloud GPU servers")).to_be_visible()

    page.goto(f"/dags/{DAG_ID}")
    page.get_by_role("button", name="Dag Docs").click()
    docs = page.get_by_role("dialog")
    # Rendered Markdown, not its source: a heading, bold text and the table of steps.
    expect(docs.get_by_role("heading", name="Train on short-lived IBM Cloud GPU servers")).to_be_visible()
    expect(docs.locator("strong", has_text="always destroys")).to_be_visible()
    expect(docs.get_by_role("cell", name="validate", exact=True)).to_be_attached()
    expect(docs).not_to_contain_text("###")


# -- the trigger form --------------------------------------------------------------------------------
def test_trigger_form_with_its_defaults_untouched_starts_a_run(page: Page, local_ui) -> None:
    _, af = local_ui
    page.set_viewport_size({"width": 1400, "height": 3000})  # the whole dialog on screen
    dialog = open_trigger_form(page)
    # The regression this suite exists for: a required-but-empty optional field disabled Trigger.
    expect(trigger_button(dialog)).to_be_enabled()
    expect(dialog.get_by_text("Run Parameters")).to_be_visible()
    save_screenshot(dialog, "trigger-form")

    for section in SECTIONS:  # collapsed until clicked
        dialog.get_by_role("button", name=section).click()
    for name, param in PARAMS.items():
        expect(dialog).to_contain_text(param.schema["title"])
        expect(dialog).to_contain_text(param.description)
        value = field(dialog, name)
        if is_json_or_list(param):  # a JSON editor or a multi-choice: shown, above
            continue
        if isinstance(param.value, bool):
            expect(value).not_to_be_checked()
        else:  # defaults filled in; an optional field stays empty
            shown = "" if param.value is None else str(param.value)
            if isinstance(param.value, float):  # the number field writes 100.0 as 100
                shown = format(param.value, "g")
            expect(value).to_have_value(shown)
    # Enums are choices (comboboxes listing their options), not free text.
    choices = dialog.locator("input[role=combobox]")
    expect(choices.nth(len(ENUMS) - 1)).to_be_attached()  # at least one per enum
    for name in ENUMS:  # each choice holds its default
        expect(field(dialog, name)).to_have_attribute("type", "hidden")

    before = run_ids(af)
    expect(trigger_button(dialog)).to_be_enabled()
    trigger_button(dialog).click()
    (run_id,) = wait_for_new_runs(af, before)
    conf = af.api("GET", f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}")["conf"]
    # The empty optional fields arrive as null; the pipeline reads null and "" alike.
    assert conf["existing_workspace_id"] is None and conf["debug_allowed_cidr"] is None, conf
    RUNS["defaults"] = run_id


# -- a successful run, its graph and links -----------------------------------------------------------
def test_a_run_from_the_form_succeeds_with_every_task_green(page: Page, local_ui) -> None:
    box, af = local_ui
    run_id = RUNS["defaults"]
    states = wait_until_done(af, run_id)
    assert states.pop("run") == "success", states
    for task_id, state in states.items():
        assert state == ("skipped" if task_id in ON_SUCCESS_SKIPPED else "success"), (task_id, states)

    page.set_viewport_size({"width": 2000, "height": 560})  # a chain of 13 tasks: wide
    open_graph(page, run_id)
    show_whole_graph(page)
    for task_id, state in states.items():
        expect(graph_node(page, task_id)).to_contain_text(state)
    expect(graph_node(page, "hold_on_failure")).to_contain_text("skipped")
    save_screenshot(page, "run-success-graph")
    assert live_resources(box) == []


def test_the_schematics_workspace_link_points_at_the_run_s_workspace(page: Page, local_ui) -> None:
    _, af = local_ui
    run_id = RUNS["defaults"]
    workspace_id = xcom(af, run_id, "create_workspace")
    assert re.fullmatch(r"us-south\.workspace\.[A-Za-z0-9._-]+", str(workspace_id)), workspace_id
    # On each Schematics task's Details tab; destroy ended in the triggerer, with no worker.
    for task_id in ("create_workspace", "plan", "apply", "destroy", "delete_workspace"):
        page.goto(run_url(run_id, task_id) + "/details")
        link = page.locator("a", has_text="Schematics workspace")
        expect(link).to_have_attribute("href", f"https://cloud.ibm.com/schematics/workspaces/{workspace_id}")
        expect(link).to_have_attribute("target", "_blank")


def test_the_assets_page_lists_the_model_and_its_event_from_the_successful_run(page: Page, local_ui) -> None:
    run_id = RUNS["defaults"]
    page.goto("/assets")
    link = page.get_by_role("link", name=MODEL_ASSET, exact=True)
    row = page.get_by_role("row").filter(has=link)
    expect(row.get_by_role("time")).to_be_visible()  # "Last Asset Event": the run's verdict emitted one
    link.click()
    expect(page.get_by_role("heading", name=MODEL_ASSET, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="1 Asset Event")).to_be_visible()
    # Its source: this run's verdict, the group's one leaf.
    source = page.locator('a[href$="/tasks/run_verdict"]')
    expect(source).to_have_text(DAG_ID)
    href = urllib.parse.unquote(source.get_attribute("href") or "")
    assert href == f"/dags/{DAG_ID}/runs/{run_id}/tasks/run_verdict", href


# -- invalid values ---------------------------------------------------------------------------------------
def test_invalid_values_show_a_message_and_create_nothing(page: Page, local_ui) -> None:
    # After the run above has ended: the sandbox's counters and inventory are this test's alone.
    box, af = local_ui
    creates_before, runs_before = workspace_creates(box), run_ids(af)
    dialog = open_trigger_form(page)

    # vm_count 9: the number field stops at the schema's maximum; the form cannot send 9.
    vm_count = field(dialog, "vm_count")
    vm_count.fill("9")
    vm_count.blur()
    expect(vm_count).to_have_value("8")
    vm_count.fill("1")
    vm_count.blur()

    # A negative learning rate: the API refuses the trigger and the form shows why.
    rate = field(dialog, "learning_rate")
    rate.fill("-0.1")
    rate.blur()
    trigger_button(dialog).click()
    expect(page.get_by_text("Failed to Trigger Dag").first).to_be_visible()
    expect(dialog).to_contain_text("-0.1")
    expect(dialog).to_contain_text("Learning rate")
    assert run_ids(af) == runs_before
    page.mouse.move(0, 0)  # a hovered toast stays, over the Trigger button
    expect(page.get_by_text("Failed to Trigger Dag")).to_have_count(0)

    # A zone outside the region passes the form (it is a cross-field rule): validate refuses it
    # and says so in its log, before anything exists.
    rate.fill("0.001")
    rate.blur()
    field(dialog, "zone").fill("eu-de-1")
    trigger_button(dialog).click()
    (run_id,) = wait_for_new_runs(af, runs_before)
    states = wait_until_done(af, run_id)
    assert states["run"] == "failed" and states["validate"] == "failed", states
    assert states["run_verdict"] == "failed", states
    message = "zone: 'eu-de-1' is not in region 'us-south'"
    log = af.api("GET", f"{run_api(run_id)}/taskInstances/validate/logs/1", params={"full_content": True})
    assert message in str(log), "validate failed for another reason; see its log"
    page.goto(run_url(run_id, "validate"))
    expect(page.get_by_text(message).first).to_be_visible()
    assert workspace_creates(box) == creates_before
    assert live_resources(box) == []


# -- a costly run waits for approval ------------------------------------------------------------------------
def test_a_costly_run_waits_for_approval_and_a_rejection_creates_nothing(page: Page, local_ui) -> None:
    box, af = local_ui
    creates_before = workspace_creates(box)
    run_id = trigger_with(page, af, {"approval_above_usd": 0.01})
    wait_for_question(af, run_id, "approve")
    conf = af.api("GET", run_api(run_id))["conf"]
    worst = worst_case(conf)

    drawer = open_required_actions(page, run_id)
    # The question, with the run's worst-case cost as the pipeline computes it, and its two answers.
    expect(drawer.get_by_text(f"Approve a GPU run of up to {worst.usd:.2f} USD?")).to_be_visible()
    expect(drawer).to_contain_text("above the approval threshold of 0.01 USD")
    expect(drawer).to_contain_text(f"Worst case: {worst.explain()}")
    expect(drawer.get_by_role("button", name=APPROVE, exact=True)).to_be_visible()
    save_screenshot(drawer, "approval")
    # Nothing exists while the run waits.
    assert workspace_creates(box) == creates_before
    assert live_resources(box) == []

    drawer.get_by_role("button", name=REJECT, exact=True).click()
    expect(drawer.get_by_role("heading", name="Pending required actions (0)")).to_be_visible()
    states = wait_until_done(af, run_id)
    assert states["run"] == "failed" and states["approve"] == "failed", states
    assert states["create_workspace"] == "upstream_failed", states
    assert states["destroy"] == "success" and states["run_verdict"] == "failed", states
    assert workspace_creates(box) == creates_before
    assert live_resources(box) == []


# -- a backfill from the UI --------------------------------------------------------------------------
def test_a_backfill_of_two_dates_started_from_the_ui_completes_isolated(page: Page, local_ui) -> None:
    box, af = local_ui
    before = run_ids(af)
    dialog = open_trigger_form(page)
    dialog.get_by_text("Backfill", exact=True).click()
    # The weekly schedule (Mondays 12:00 UTC): 16 and 23 November 2026.
    pickers = dialog.get_by_test_id("datetime-input")  # From, To
    expect(pickers).to_have_count(2)
    for picker, (day, hour) in zip(
        pickers.all(), (("2026/11/16", "00:00"), ("2026/11/24", "00:00")), strict=True
    ):
        # This picker's own popover (Ark names it after the trigger's owner): while one closes and
        # the next opens, a busy machine shows both.
        popover = page.locator(f'[id="popover:{picker.get_attribute("data-ownedby")}:content"]')
        picker.click()
        expect(popover).to_be_visible()
        popover.get_by_placeholder("YYYY/MM/DD").fill(day)
        popover.get_by_placeholder("HH:mm").fill(hour)
        page.keyboard.press("Escape")
        expect(popover).to_be_hidden()
    expect(dialog.get_by_text("2 runs will be triggered.")).to_be_visible()
    dialog.locator("input[name=max_active_runs]").fill("2")
    dialog.get_by_role("button", name="Run Backfill").click()

    new = wait_for_new_runs(af, before, count=2)
    assert all(r.startswith("backfill__") for r in new), new
    for run_id in new:
        states = wait_until_done(af, run_id)
        assert states["run"] == "success", (run_id, states)
    plans = [xcom(af, r, "validate") for r in new]
    # Isolated: each run had its own workspace, results prefix and tags.
    assert len({p["workspace_name"] for p in plans}) == 2
    assert len({p["prefix"] for p in plans}) == 2
    for plan in plans:
        keys = [
            o["Key"]
            for o in box.cos_client().list_objects_v2(Bucket=plan["bucket"], Prefix=plan["prefix"])[
                "Contents"
            ]
        ]
        assert f"{plan['prefix']}vm-0/_SUCCESS" in keys
    assert live_resources(box) == []


# -- a failed run -------------------------------------------------------------------------------------
def test_a_failed_run_asks_destroy_now_or_keep_and_destroy_now_cleans_up(page: Page, local_ui) -> None:
    box, af = local_ui
    box.faults.set(["workload_fails"])  # the training job writes _FAILED
    try:
        run_id = trigger_with(page, af, {"keep_on_failure_minutes": 30})
        wait_for_question(af, run_id, "hold_on_failure")
    finally:
        box.faults.set([])
    RUNS["failed"] = run_id

    drawer = open_required_actions(page, run_id)
    question = "wait_for_output failed: destroy the servers now, or keep them 30 minutes?"
    expect(drawer.get_by_text(question)).to_be_visible()
    keep = drawer.get_by_role("button", name="Keep for 30 minutes", exact=True)
    expect(keep).to_be_visible()
    assert live_resources(box) != []  # the servers are up while the question waits

    drawer.get_by_role("button", name=DESTROY_NOW, exact=True).click()
    expect(drawer.get_by_role("heading", name="Pending required actions (0)")).to_be_visible()
    states = wait_until_done(af, run_id)
    assert states["run"] == "failed", states
    assert states["wait_for_output"] == "failed" and states["hold_on_failure"] == "success", states
    assert states["destroy"] == "success" and states["delete_workspace"] == "success", states
    assert states["run_verdict"] == "failed", states
    assert live_resources(box) == []


def test_a_failed_run_shows_destroy_green_and_the_verdict_red(page: Page, local_ui) -> None:
    box, _ = local_ui
    run_id = RUNS["failed"]
    page.set_viewport_size({"width": 2000, "height": 560})
    open_graph(page, run_id)
    show_whole_graph(page)
    expect(graph_node(page, "destroy")).to_contain_text("success")
    expect(graph_node(page, "run_verdict")).to_contain_text("failed")
    expect(graph_node(page, "wait_for_output")).to_contain_text("failed")
    expect(graph_node(page, "hold_on_failure")).to_contain_text("success")
    save_screenshot(page, "run-failed-graph")
    assert live_resources(box) == []


# -- the connection form (the provider's connection types) ---------------------------------------------------
def open_new_connection_form(page: Page, conn_type: str) -> Any:
    """Admin > Connections > Add, with ``conn_type`` (its display name) picked."""
    page.goto("/connections")
    page.get_by_role("button", name="Add Connection").click()
    form = page.get_by_role("dialog")
    # react-select: its input, not the placeholder drawn over it, takes the typing
    form.get_by_role("combobox").first.fill(conn_type)
    page.get_by_role("option", name=conn_type, exact=True).click()
    expect(form.get_by_text("Standard Fields")).to_be_visible()
    return form


def open_section(form: Any, trigger_id: str) -> None:
    """Open one section of the form's accordion (one is open at a time): standardFields, Extra Fields."""
    trigger = form.locator(f"[id$=':trigger:{trigger_id}']")
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    expect(trigger).to_have_attribute("aria-expanded", "true")


def field_label(form: Any, label: str) -> Any:
    """A field's label, with or without the required marker (``Region *``)."""
    return form.locator("label").filter(has_text=re.compile(rf"^{re.escape(label)}\s*\*?$"))


def extra_field_names(form: Any) -> set[str]:
    names = form.locator("[name^=element_]").evaluate_all("els => els.map(e => e.name)")
    return {name.removeprefix("element_") for name in names}


def test_admin_connections_lists_the_deployment_s_connections(page: Page) -> None:
    """make airflow stores its connections in the metadata DB: the UI lists them (and can edit them)."""
    page.goto("/connections")
    for conn_id, conn_type in CONNECTIONS.items():
        row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=conn_id, exact=True))
        expect(row.get_by_role("cell", name=conn_type, exact=True)).to_be_visible()
        expect(row.get_by_role("button", name="Edit Connection")).to_be_visible()


def test_the_connection_form_offers_ibm_cloud_and_ibm_cos_with_their_fields(page: Page, local_ui) -> None:
    """The installed provider's connection types (make install), drawn from its declared fields."""
    from ibm_cloud_airflow.get_provider_info import get_provider_info

    declared = {c["connection-type"]: set(c["conn-fields"]) for c in get_provider_info()["connection-types"]}
    _, af = local_ui
    form = open_new_connection_form(page, "IBM Cloud")
    form.locator("input[name=connection_id]").fill("ibm_cloud_from_form")
    form.locator("input[name=connection_id]").press("Tab")  # the form validates on blur
    open_section(form, "standardFields")
    expect(field_label(form, "API key")).to_be_visible()  # the relabelled password
    expect(form.locator("input[name=password]")).to_have_attribute("type", "password")
    for hidden in ("host", "port", "login", "schema"):
        expect(form.locator(f"input[name={hidden}]")).to_have_count(0)
    expect(field_label(form, "Schema")).to_have_count(0)
    form.locator("input[name=password]").fill("form-api-key")
    form.locator("input[name=password]").press("Tab")
    open_section(form, "Extra Fields")
    for label in ("Region", "Resource group ID", "IAM endpoint", "Schematics endpoint", "VPC endpoint"):
        expect(field_label(form, label)).to_be_visible()
    assert extra_field_names(form) == declared["ibm_cloud"]
    expect(form.locator("[name=element_region]")).to_have_value("us-south")  # a choice, with its default

    # Saved, the form's fields are in extra under the keys the hooks parse
    form.get_by_role("button", name="Save").click()
    expect(form).to_have_count(0)
    saved = af.api("GET", "/connections/ibm_cloud_from_form")
    assert saved["conn_type"] == "ibm_cloud"
    assert json.loads(saved["extra"])["region"] == "us-south"

    form = open_new_connection_form(page, "IBM Cloud Object Storage")
    open_section(form, "standardFields")
    expect(field_label(form, "HMAC access key ID")).to_be_visible()
    expect(field_label(form, "HMAC secret access key or API key")).to_be_visible()
    expect(form.locator("input[name=password]")).to_have_attribute("type", "password")
    for hidden in ("host", "port", "schema"):
        expect(form.locator(f"input[name={hidden}]")).to_have_count(0)
    open_section(form, "Extra Fields")
    for label in ("COS endpoint", "COS endpoint for the servers", "COS region", "COS instance CRN"):
        expect(field_label(form, label)).to_be_visible()
    assert extra_field_names(form) == declared["ibm_cos"]
    expect(form.locator("[name=element_auth_type]")).to_have_value("hmac")
