"""The LM head on numba-cuda (reference: llmref.ref.lm_head): one thread per logit runs the
shared dot product of llmref.accel.kernels.lm_head into a guarded buffer, accumulated in the
compute dtype (float32 for float16/bfloat16) and rounded once. Checked by the reference's
lm_head_args."""
import math

from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import lm_head as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.lm_head import lm_head_args

_logits = cuda.jit(device=True)(kernels.logits)


@cuda.jit
def _logits_kernel(h, w, out):
    _logits(h, w, cuda.grid(1), cuda.gridsize(1), out)


def lm_head(h, embedding, output_weight, tied=False):
    h, w = lm_head_args(h, embedding, output_weight, tied)
    w = widen(w)  # (V, D)
    rows = widen(h).reshape(math.prod(h.shape[:-1]), h.shape[-1])  # (T, D); T or D may be 0
    out = Guarded((rows.shape[0], w.shape[0]), rows.dtype, "numba-cuda lm_head")
    _logits_kernel[grid(out.n), THREADS](cuda.to_device(rows), cuda.to_device(w), out.device)
    return out.result().reshape(h.shape[:-1] + (w.shape[0],)).astype(h.dtype)
