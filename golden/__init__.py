"""Packaged golden vectors (golden/<component>/<case>.safetensors, MANIFEST.json)."""
