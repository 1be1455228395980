"""The deployment's settings for the pipeline's DAGs, from Airflow's configuration.

A deployment sets them the way it sets any Airflow option, in ``airflow.cfg`` or as environment
variables (``AIRFLOW__IBM_CLOUD__WORKLOAD_SCHEDULE=None``), in the ``[ibm_cloud]`` section that
also holds the quotas (``gpu_pipeline.quotas``). The DAG files read them when they are parsed:
reading configuration costs no database or network call, unlike Airflow Variables.

=============================  ==============  ==================================================
option                         default         what
=============================  ==============  ==================================================
``workload_schedule``          ``0 12 * * 1``  ``ibm_gpu_workload``'s schedule; ``None``: on demand
``workload_max_active_runs``   ``4``           its runs at once
``reaper_schedule``            ``@hourly``     ``ibm_gpu_reaper``'s schedule; ``None``: on demand
``reaper_scheduled_dry_run``   ``False``       scheduled reaper runs only report
``schematics_poll_interval``   ``30``          seconds between polls of a Schematics job
``cos_poke_interval``          ``1``           seconds between checks for the workload's markers
``server_check_interval``      ``30``          seconds between checks that the run's servers are up
=============================  ==============  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SECTION = "ibm_cloud"
NO_SCHEDULE = ("", "none")


@dataclass(frozen=True)
class PipelineSettings:
    workload_schedule: str | None = "0 12 * * 1"  # the retired sample ran Mondays at 12:00 UTC
    workload_max_active_runs: int = 4
    reaper_schedule: str | None = "@hourly"
    reaper_scheduled_dry_run: bool = False
    # Schematics polls count against its 50 requests/minute per account; COS checks are cheap, and
    # decide how soon after the workload's _SUCCESS the servers are destroyed; a server check is
    # one VPC API call listing the run's servers.
    schematics_poll_interval: float = 30.0
    cos_poke_interval: float = 1.0
    server_check_interval: float = 30.0


def _schedule(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in NO_SCHEDULE else value.strip()


def pipeline_settings(config: Any = None) -> PipelineSettings:
    """The settings from ``config`` (Airflow's ``conf`` by default), each falling back to its default.

    A value that is not a number or a boolean where one is expected fails the DAG's import with
    Airflow's own error naming the option, which the UI shows as an import error.
    """
    if config is None:
        from airflow.sdk import conf as config
    default = PipelineSettings()

    def option(name: str, read: str = "get") -> Any:
        return getattr(config, read)(SECTION, name, fallback=getattr(default, name))

    return PipelineSettings(
        workload_schedule=_schedule(option("workload_schedule")),
        workload_max_active_runs=option("workload_max_active_runs", "getint"),
        reaper_schedule=_schedule(option("reaper_schedule")),
        reaper_scheduled_dry_run=option("reaper_scheduled_dry_run", "getboolean"),
        schematics_poll_interval=option("schematics_poll_interval", "getfloat"),
        cos_poke_interval=option("cos_poke_interval", "getfloat"),
        server_check_interval=option("server_check_interval", "getfloat"),
    )
