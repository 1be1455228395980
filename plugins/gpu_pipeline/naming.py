"""How the pipeline names and tags what a run creates: one definition for the writer and the reaper.

* the workspace ``airflow-<slug>``, tagged ``airflow-run:<slug>`` and ``ttl:<YYYYMMDDTHHMMSSZ>``
  (:func:`run_tags`; ``terraform/main.tf`` writes the same two tags on every VPC resource);
* every VPC resource ``<slug>-<role>`` (:func:`belongs_to_run`), the trusted profile
  ``<slug>-vm-profile``;
* a run that adopts a workspace leases it with ``airflow-lease:<its workspace name>``
  (``ibm_cloud_airflow.utils.leases``).

The slug itself is the provider's ``run_slug`` (``ibm_cloud_airflow.utils.run_identity``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from ibm_cloud_airflow.utils.leases import LEASE_TAG_PREFIX
from ibm_cloud_airflow.utils.run_identity import SLUG_RE

WORKSPACE_PREFIX = "airflow-"
RUN_TAG = "airflow-run:"
TTL_TAG = "ttl:"
TTL_FORMAT = "%Y%m%dT%H%M%SZ"
PROFILE_SUFFIX = "-vm-profile"
#: Names that can hold a slug (``<slug>-<role>``): only those cost the reaper a tag look-up.
CANDIDATE_NAME_RE = re.compile(SLUG_RE.pattern.removesuffix("$") + r"-[a-z0-9-]+$")


def workspace_name(slug: str) -> str:
    return WORKSPACE_PREFIX + slug


def slug_of_workspace(name: str) -> str | None:
    """The slug a workspace name ``airflow-<slug>`` holds, or None."""
    slug = name[len(WORKSPACE_PREFIX) :] if name.startswith(WORKSPACE_PREFIX) else ""
    return slug if SLUG_RE.match(slug) else None


def trusted_profile_name(slug: str) -> str:
    return slug + PROFILE_SUFFIX


def slug_of_trusted_profile(name: str) -> str | None:
    """The slug a trusted profile name ``<slug>-vm-profile`` holds, or None."""
    slug = name.removesuffix(PROFILE_SUFFIX) if name.endswith(PROFILE_SUFFIX) else ""
    return slug if SLUG_RE.match(slug) else None


def profile_names_run(description: str | None, slug: str) -> bool:
    """The trusted profile's description (``terraform/main.tf``) names the run ``slug``."""
    return f"Airflow run {slug}" in str(description or "")


def belongs_to_run(name: str | None, slug: str) -> bool:
    """Every resource of the run is named ``<slug>`` or ``<slug>-<role>``."""
    return bool(name) and (name == slug or name.startswith(slug + "-"))


def format_deadline(deadline: datetime | str) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC for a datetime or an RFC 3339 string."""
    if isinstance(deadline, str):
        deadline = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
    if deadline.tzinfo is None:
        deadline = deadline.replace(tzinfo=UTC)
    return deadline.astimezone(UTC).strftime(TTL_FORMAT)


def parse_ttl(value: str | None) -> datetime | None:
    """The deadline a ``ttl:`` tag's value names, or None."""
    try:
        return datetime.strptime(value or "", TTL_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def run_tags(slug: str, deadline: datetime | str) -> list[str]:
    """Tags for every resource of the run: ``airflow-run:<slug>`` and ``ttl:<YYYYMMDDTHHMMSSZ>``."""
    return [RUN_TAG + slug, TTL_TAG + format_deadline(deadline)]


def tag_value(tags: Iterable[str], prefix: str) -> str | None:
    """The value of the first tag ``<prefix><value>``, or None."""
    return next((t[len(prefix) :] for t in tags if t.startswith(prefix)), None)


def lease_holder_slug(tag: str) -> str | None:
    """The slug of the run whose workspace holds the lease ``airflow-lease:airflow-<slug>``, or None."""
    holder = tag_value([tag], LEASE_TAG_PREFIX)
    return slug_of_workspace(holder) if holder else None
