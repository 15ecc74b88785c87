"""The W8A16 dot product of one output (reference: llmref.ref.w8a16_matmul), a numba-cuda
thread's (see llmref.accel.kernels); numba-cpu runs vectorised float32 sums of its own
(llmref.accel.numba_cpu.w8a16_matmul).
"""


def output_dot(x, w_q, scales, g, m, n):
    """y[m, n] = sum over groups of scales[n, grp] * sum_k x[m, k] w_q[n, k]: each group's dot
    product with the integer codes first, then scaled once (the same value up to rounding);
    float64 accumulators, at least as accurate as the float32 accumulation the spec asks for."""
    acc = 0.0
    for grp in range(scales.shape[1]):
        part = 0.0
        for k in range(grp * g, (grp + 1) * g):
            part += x[m, k] * w_q[n, k]
        acc += part * scales[n, grp]
    return acc
