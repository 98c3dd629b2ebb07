"""Progressive Expert Coverage: the library half (no Prefect imports here)."""
