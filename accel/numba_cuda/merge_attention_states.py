"""Merging two attention states on numba-cuda (reference:
llmref.ref.merge_attention_states): one thread per row runs the shared row math of
llmref.accel.kernels.merge_attention_states. Checked by the reference's
merge_attention_states_args; computed in the compute dtype (float32 for float16/bfloat16),
rounded once; outputs in guarded buffers.
"""
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import merge_attention_states as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.merge_attention_states import merge_attention_states_args

_merge_rows = cuda.jit(device=True)(kernels.merge_rows)


@cuda.jit
def _merge(out_a, lse_a, out_b, lse_b, out, lse):
    _merge_rows(out_a, lse_a, out_b, lse_b, cuda.grid(1), cuda.gridsize(1), out, lse)


def merge_attention_states(out_a, lse_a, out_b, lse_b):
    out_a, lse_a, out_b, lse_b = merge_attention_states_args(out_a, lse_a, out_b, lse_b)
    rows, dim_v = lse_a.size, out_a.shape[-1]
    out = Guarded((rows, dim_v), widen(out_a).dtype, "numba-cuda merge_attention_states out")
    lse = Guarded((rows,), widen(lse_a).dtype, "numba-cuda merge_attention_states lse")
    _merge[grid(rows), THREADS](cuda.to_device(widen(out_a).reshape(rows, dim_v)),
                                cuda.to_device(widen(lse_a).reshape(rows)),
                                cuda.to_device(widen(out_b).reshape(rows, dim_v)),
                                cuda.to_device(widen(lse_b).reshape(rows)), out.device, lse.device)
    return (out.result().reshape(out_a.shape).astype(out_a.dtype),
            lse.result().reshape(lse_a.shape).astype(out_a.dtype))
