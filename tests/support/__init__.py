"""Test helpers: servers and engines the tests start, job doubles, the kill-and-resume driver."""
