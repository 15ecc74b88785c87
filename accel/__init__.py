"""Accelerated counterparts, one sub-package per backend."""
