"""The embedding gather (reference: llmref.ref.embedding), numba-cuda's per-element loop (see
llmref.accel.kernels).

Output elements are visited as first, first + step, ... of the n*D elements: a numba-cuda
thread visits the ones of its grid-stride (thread index, grid size). numba-cpu copies whole
rows instead (llmref.accel.numba_cpu._rows): the k // D, k % D here cost a division per
element.
"""


def gather_rows(ids, weight, scale, first, step, out):
    """out[i, d] = weight[ids[i], d] * scale for ids (n,) checked to lie in [0, V), weight (V, D)."""
    dim = weight.shape[1]
    for k in range(first, ids.shape[0] * dim, step):
        i, d = k // dim, k % dim
        out[i, d] = weight[ids[i], d] * scale
