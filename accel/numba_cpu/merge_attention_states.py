"""Merging two attention states on numba-cpu (reference: llmref.ref.merge_attention_states):
the shared row math of llmref.accel.kernels.merge_attention_states over every row. Checked
by the reference's merge_attention_states_args; computed in the compute dtype (float32 for
float16/bfloat16), rounded once.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import merge_attention_states as kernels
from llmref.ref.merge_attention_states import merge_attention_states_args

_merge_rows = numba.njit(cache=True)(kernels.merge_rows)


def merge_attention_states(out_a, lse_a, out_b, lse_b):
    out_a, lse_a, out_b, lse_b = merge_attention_states_args(out_a, lse_a, out_b, lse_b)
    dim_v = out_a.shape[-1]
    oa, ob = widen(out_a).reshape(-1, dim_v), widen(out_b).reshape(-1, dim_v)  # (rows, Dv)
    la, lb = widen(lse_a).reshape(-1), widen(lse_b).reshape(-1)  # (rows,)
    out, lse = np.empty_like(oa), np.empty_like(la)
    _merge_rows(oa, la, ob, lb, 0, 1, out, lse)
    return (out.reshape(out_a.shape).astype(out_a.dtype, copy=False),
            lse.reshape(lse_a.shape).astype(out_a.dtype, copy=False))
