"""The GPU training pipeline's own logic: its parameters, the per-run plan and the run report.

The generic IBM Cloud building blocks live in ``ibm_cloud_airflow``; this package holds what is
specific to the ``ibm_gpu_workload`` DAG, so that the DAG file stays short and declarative.
"""
