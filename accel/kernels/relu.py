"""ReLU of elements (reference: llmref.ref.relu), shared by numba-cpu and numba-cuda (see
llmref.accel.kernels).

Elements are visited as first, first + step, ... of the flat x: numba-cpu walks contiguous
chunks of them (0, 1 on each, chunks in parallel: llmref.accel.numba_cpu.relu), a numba-cuda
thread the ones of its grid-stride (thread index, grid size).
"""


def relu_elements(x, first, step, out):
    """out[i] = max(x[i], 0) in x's precision; +0.0 for negatives and for -0.0."""
    for i in range(first, x.shape[0], step):
        v = x[i]
        out[i] = v if v > 0 else 0.0
