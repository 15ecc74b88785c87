"""The embedding gather (reference: llmref.ref.embedding), shared by numba-cpu and numba-cuda
(see llmref.accel.kernels).

Output elements are visited as first, first + step, ... of the n*D elements: numba-cpu walks
them all (0, 1), a numba-cuda thread the ones of its grid-stride (thread index, grid size).
"""


def gather_rows(ids, weight, scale, first, step, out):
    """out[i, d] = weight[ids[i], d] * scale for ids (n,) checked to lie in [0, V), weight (V, D)."""
    dim = weight.shape[1]
    for k in range(first, ids.shape[0] * dim, step):
        i, d = k // dim, k % dim
        out[i, d] = weight[ids[i], d] * scale
