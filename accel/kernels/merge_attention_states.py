"""Merging two attention states row by row (reference: llmref.ref.merge_attention_states),
shared by numba-cpu and numba-cuda (see llmref.accel.kernels).

Rows are visited as first, first + step, ...: numba-cpu walks them all (0, 1), a numba-cuda
thread the ones of its grid-stride (thread index, grid size).
"""
import math


def merge_rows(out_a, lse_a, out_b, lse_b, first, step, out, lse):
    """Row r of (rows, Dv) outputs and (rows,) log-sum-exps:

      M = max(lse_a, lse_b);  w_x = exp(lse_x - M);  lse = M + log(w_a + w_b)
      out = (w_a out_a + w_b out_b) / (w_a + w_b)
    Two empty parts (lse -inf both) give out 0, lse -inf. Computed in the arrays' dtype."""
    for r in range(first, out_a.shape[0], step):
        big = max(lse_a[r], lse_b[r])
        if big == -math.inf:
            for d in range(out_a.shape[1]):
                out[r, d] = 0
            lse[r] = big
            continue
        w_a = math.exp(lse_a[r] - big)
        w_b = math.exp(lse_b[r] - big)
        total = w_a + w_b
        lse[r] = big + math.log(total)
        for d in range(out_a.shape[1]):
            out[r, d] = (w_a * out_a[r, d] + w_b * out_b[r, d]) / total
