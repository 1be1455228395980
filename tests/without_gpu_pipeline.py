"""Pytest plugin: make ``gpu_pipeline`` unimportable, as it is where the provider is installed alone.

``make test`` runs ``tests/ibm_cloud_airflow`` with ``-p tests.without_gpu_pipeline``, so a provider
module or test that imports the pipeline fails there with ``ModuleNotFoundError``.
"""

from __future__ import annotations

import sys

# A None entry makes every "import gpu_pipeline..." raise ModuleNotFoundError (Python's import docs).
sys.modules["gpu_pipeline"] = None  # type: ignore[assignment]
