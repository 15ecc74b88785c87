"""Packaged spec files (specs/*.yaml)."""
