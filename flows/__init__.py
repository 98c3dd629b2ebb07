"""Prefect flows of pec: thin orchestration over the pec library."""
