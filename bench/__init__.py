"""Benchmarks: what the pipeline costs while it orchestrates, against same-run baselines."""
