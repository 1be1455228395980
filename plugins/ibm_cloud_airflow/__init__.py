"""A small Airflow provider for IBM Cloud: Schematics, Cloud Object Storage and VPC.

Laid out like the Google/Amazon providers (``hooks/``, ``operators/``, ``sensors/``, ``triggers/``,
``links/``). Heavy SDK imports happen inside functions so that importing this package at DAG-parse
time stays cheap. See ``docs/provider.md``.
"""
