"""The readable float64 NumPy reference: one module per component family."""
