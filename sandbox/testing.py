"""Pytest fixtures for the sandbox (registered by tests/conftest.py)."""
