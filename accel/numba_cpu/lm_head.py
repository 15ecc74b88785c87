"""The LM head on numba-cpu (reference: llmref.ref.lm_head): the shared dot products of
llmref.accel.kernels.lm_head for every logit, accumulated in the compute dtype (float32 for
float16/bfloat16) and rounded once. Checked by the reference's lm_head_args."""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import lm_head as kernels
from llmref.ref.lm_head import lm_head_args

_logits = numba.njit(cache=True)(kernels.logits)


def lm_head(h, embedding, output_weight, tied=False):
    h, w = lm_head_args(h, embedding, output_weight, tied)
    w = widen(w)  # (V, D)
    rows = widen(h).reshape(math.prod(h.shape[:-1]), h.shape[-1])  # (T, D); T or D may be 0
    out = np.empty((rows.shape[0], w.shape[0]), rows.dtype)
    _logits(rows, w, 0, 1, out)
    return out.reshape(h.shape[:-1] + (w.shape[0],)).astype(h.dtype)
