"""Lineage of COS objects: what a task read and wrote, for OpenLineage (or any hook lineage reader).

Two ways in, as Airflow's own providers do:

* Hook level: :class:`~ibm_cloud_airflow.hooks.cos.CosHook` reports every object it reads or
  writes to Airflow's hook lineage collector (:func:`report_read`, :func:`report_write`), as an
  Airflow asset ``cos://<bucket>/<key>``. Any task that uses the hook gets its lineage this way,
  ``@task`` functions included. Without a lineage reader (no OpenLineage provider) Airflow's
  collector is a no-op.
* Operator level: an operator that knows what its work reads and writes declares it
  (:class:`~ibm_cloud_airflow.sensors.cos.CosKeySensor`: the training's inputs and outputs) through
  :func:`operator_lineage`, which OpenLineage's ``get_openlineage_facets_on_*`` methods return.

OpenLineage names object-storage datasets by bucket and key (its naming spec, "S3": namespace
``s3://<bucket>``, name ``<key>``). IBM Cloud Object Storage speaks the S3 API and the spec names no
other scheme for it, so a COS object is ``s3://<bucket>`` / ``<key>`` there; in Airflow its asset URI
is ``cos://<bucket>/<key>``, a scheme the provider registers (``get_provider_info``: ``asset-uris``)
with the converter below.

Nothing here needs the OpenLineage provider: its classes are imported when it calls in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    from airflow.sdk import Asset

SCHEME = "cos"
#: OpenLineage's object-storage namespace scheme for an S3-compatible store.
OPENLINEAGE_SCHEME = "s3"


def cos_uri(bucket: str, key: str) -> str:
    """The Airflow asset URI of one COS object."""
    return f"{SCHEME}://{bucket}/{key.lstrip('/')}"


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI handler for ``cos://``: the bucket is required."""
    if not uri.netloc:
        raise ValueError("A cos:// asset URI must name a bucket: cos://<bucket>/<key>")
    return uri


def create_asset(*, bucket: str, key: str, extra: dict | None = None) -> Asset:
    """Airflow's asset factory for ``cos``: one COS object."""
    from airflow.sdk import Asset

    return Asset(uri=cos_uri(bucket, key), extra=extra)


def openlineage_dataset(bucket: str, key: str) -> Any:
    """One COS object as an OpenLineage dataset: namespace ``s3://<bucket>``, name ``<key>``."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=f"{OPENLINEAGE_SCHEME}://{bucket}", name=key.lstrip("/"))


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Any:
    """OpenLineage's converter for ``cos://`` assets (registered with the provider's asset URIs)."""
    parsed = urlsplit(asset.uri)
    return openlineage_dataset(parsed.netloc, parsed.path)


def operator_lineage(bucket: str, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> Any:
    """What an operator's ``get_openlineage_facets_on_*`` returns: COS objects of ``bucket`` by key."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(
        inputs=[openlineage_dataset(bucket, key) for key in inputs],
        outputs=[openlineage_dataset(bucket, key) for key in outputs],
    )


def _collector() -> Any:
    from airflow.sdk.lineage import get_hook_lineage_collector

    return get_hook_lineage_collector()


def report_read(hook: Any, bucket: str, key: str) -> None:
    """Tell Airflow's hook lineage collector that ``hook`` read ``cos://<bucket>/<key>``."""
    _collector().add_input_asset(context=hook, uri=cos_uri(bucket, key))


def report_write(hook: Any, bucket: str, key: str) -> None:
    """Tell Airflow's hook lineage collector that ``hook`` wrote ``cos://<bucket>/<key>``."""
    _collector().add_output_asset(context=hook, uri=cos_uri(bucket, key))
