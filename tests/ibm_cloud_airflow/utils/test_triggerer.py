"""can_end_from_trigger: Airflow's own listener check, and the DAGs it lets Airflow import.

Real Airflow throughout: a real listener registered with Airflow's listener manager, a real
DagBag parsing a DAG file that uses the function.
"""

from __future__ import annotations

import inspect
import textwrap

import pytest

from ibm_cloud_airflow.utils import triggerer
from ibm_cloud_airflow.utils.triggerer import can_end_from_trigger, listeners_registered


class _Listener:
    """A listener as a plugin would register it (OpenLineage's answers the same hooks)."""

    from airflow.listeners import hookimpl

    @hookimpl
    def on_starting(self, component):
        pass


@pytest.fixture
def listener():
    """A listener registered for the test, and removed afterwards (the manager is per process)."""
    from airflow.listeners.listener import get_listener_manager

    manager = get_listener_manager()
    already = set(manager.pm.get_plugins())
    registered = _Listener()
    manager.add_listener(registered)
    yield registered
    manager.pm.unregister(registered)
    assert set(manager.pm.get_plugins()) == already


def test_the_check_is_the_one_airflows_dagbag_makes():
    """Fails when Airflow moves or changes the check that refuses triggerer endings."""
    import airflow.dag_processing.dagbag as dagbag
    from airflow.listeners.listener import get_listener_manager

    source = inspect.getsource(dagbag.DagBag.bag_dag)
    assert 'getattr(task, "end_from_trigger", False) and get_listener_manager().has_listeners' in source
    assert "Listeners are not supported with end_from_trigger=True" in source
    assert dagbag.get_listener_manager is get_listener_manager
    assert inspect.getsource(triggerer.listeners_registered).count("get_listener_manager") == 2


def test_no_listener_and_no_option_means_triggerer_endings(monkeypatch):
    monkeypatch.delenv("AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER", raising=False)
    assert listeners_registered() is False
    assert can_end_from_trigger() is True


def test_a_registered_listener_means_worker_endings(listener, monkeypatch):
    monkeypatch.setenv("AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER", "True")
    assert listeners_registered() is True
    assert can_end_from_trigger() is False


def test_the_option_turns_triggerer_endings_off_without_listeners(monkeypatch):
    monkeypatch.setenv("AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER", "False")
    assert listeners_registered() is False
    assert can_end_from_trigger() is False


DAG_FILE = """
from airflow.sdk import DAG
from ibm_cloud_airflow.operators.schematics import SchematicsDestroyOperator
from ibm_cloud_airflow.sensors.cos import CosKeySensor
from ibm_cloud_airflow.utils.triggerer import can_end_from_trigger

IN_TRIGGERER = {in_triggerer}

with DAG("triggerer_probe", schedule=None):
    CosKeySensor(task_id="wait", bucket_name="b", bucket_key="k", start_from_trigger=IN_TRIGGERER)
    SchematicsDestroyOperator(
        task_id="destroy", workspace_id="w", start_from_trigger=IN_TRIGGERER, end_from_trigger=IN_TRIGGERER
    )
"""


def _bag(folder, in_triggerer: str):
    """A DagBag of one DAG file whose provider tasks take ``in_triggerer`` (Python source)."""
    from airflow.dag_processing.dagbag import DagBag

    folder.mkdir(exist_ok=True)
    (folder / "probe_dag.py").write_text(textwrap.dedent(DAG_FILE.format(in_triggerer=in_triggerer)))
    return DagBag(dag_folder=str(folder))


def test_with_a_listener_airflow_refuses_triggerer_endings_and_imports_the_dag_that_asks(
    airflow_db, listener, tmp_path, monkeypatch
):
    monkeypatch.delenv("AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER", raising=False)
    forced = _bag(tmp_path / "forced", "True")
    assert "Listeners are not supported with end_from_trigger=True" in str(forced.import_errors)

    asked = _bag(tmp_path / "asked", "can_end_from_trigger()")
    assert asked.import_errors == {}
    tasks = {t.task_id: t for t in asked.get_dag("triggerer_probe").tasks}
    for task in tasks.values():
        assert (task.start_from_trigger, task.end_from_trigger) == (False, False)


def test_without_a_listener_the_dag_keeps_its_triggerer_endings(airflow_db, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER", raising=False)
    bag = _bag(tmp_path, "can_end_from_trigger()")
    assert bag.import_errors == {}
    for task in bag.get_dag("triggerer_probe").tasks:
        assert (task.start_from_trigger, task.end_from_trigger) == (True, True)
