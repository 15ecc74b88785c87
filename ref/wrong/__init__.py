"""Realistic wrong implementations that the specs' cases must reject (see llmref selftest)."""
