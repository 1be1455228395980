"""Tests that run where the OpenLineage provider is installed (.venv-openlineage, `make test`).

OpenLineage registers its listener only where it is configured (a transport, a config file or
OPENLINEAGE_URL), as every deployment that ships it is. This process is configured before Airflow
loads its plugins: a file transport into a folder of its own.
"""

from __future__ import annotations

import json
import os
import tempfile

EVENTS_DIR = tempfile.mkdtemp(prefix="openlineage-events-")
os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
    {"type": "file", "log_file_path": os.path.join(EVENTS_DIR, "ol")}
)
