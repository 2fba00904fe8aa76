"""Prefect flows: the nightly job and its schedule."""
