"""The math numba-cpu and numba-cuda share, one module per family, written once as plain
Python functions: numba-cpu compiles them with numba.njit(cache=True)(fn), numba-cuda with
cuda.jit(device=True)(fn), and each backend keeps only its launch or loop and host glue.

Only what both targets compile: scalar math from `math`, loops, indexing of the arrays
passed in (outputs are written through them), no allocation and no NumPy calls. A shared
function calls no other shared function (numba resolves a call by the callee's global name,
which would be the plain function): round() is round-half-to-even on both targets.
"""
