"""Whether the provider's tasks may end in the triggerer: one answer, given where a DAG is defined.

A deferrable task that ends in the triggerer (``end_from_trigger``, and the sensor's
``start_from_trigger``) saves a worker start between an event and the next task, but runs no
listener. So Airflow refuses such a task wherever a listener is registered:
``DagBag.bag_dag`` raises "Listeners are not supported with end_from_trigger=True for deferrable
operators", and the DAG does not import. The OpenLineage provider registers its listener as soon as
it is installed (Astronomer's runtime and Cloud Composer ship it).

:func:`can_end_from_trigger` is what a DAG passes to the operators: ``True`` where Airflow allows
triggerer endings, ``False`` where it forbids them (the tasks then end on workers, through
``execute_complete``) or where the deployment turned them off with the Airflow option
``[ibm_cloud] end_from_trigger = False``.

    from ibm_cloud_airflow.utils.triggerer import can_end_from_trigger

    IN_TRIGGERER = can_end_from_trigger()
"""

from __future__ import annotations

#: The Airflow option that turns triggerer endings off (``AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER``).
CONF_SECTION = "ibm_cloud"
CONF_KEY = "end_from_trigger"


def listeners_registered() -> bool:
    """Whether Airflow has listeners registered in this process (OpenLineage's, for one).

    The very check ``airflow.dag_processing.dagbag.DagBag.bag_dag`` makes before it refuses a task
    with ``end_from_trigger=True``. Airflow has no public API for it: this function is the one place
    where the provider reaches into airflow-core for it, and
    ``tests/ibm_cloud_airflow/utils/test_triggerer.py`` fails if Airflow moves or changes that check.
    The listener manager is built once per process (it loads the plugins, which the
    dag-processor has loaded already).
    """
    from airflow.listeners.listener import get_listener_manager

    return bool(get_listener_manager().has_listeners)


def can_end_from_trigger() -> bool:
    """``end_from_trigger``/``start_from_trigger`` for the provider's operators in this deployment.

    False where listeners are registered (Airflow refuses triggerer endings there) or where
    ``[ibm_cloud] end_from_trigger`` is False; True otherwise (the option's default).
    """
    from airflow.sdk import conf

    if not conf.getboolean(CONF_SECTION, CONF_KEY, fallback=True):
        return False
    return not listeners_registered()
