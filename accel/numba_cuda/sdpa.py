"""Scaled dot-product attention on numba-cuda (reference: llmref.ref.sdpa): the online
attention kernel (llmref.accel.numba_cuda.online_attention, the shared row math of
llmref.accel.kernels.online_attention) with key blocks of one key, i.e. one thread per query
row making one pass with the streaming softmax. Checked by the reference's sdpa_args;
float16/bfloat16 inputs are widened to float32 on the host, every running quantity is held in
the compute dtype, the result rounded once.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cuda._launch import Guarded
from llmref.accel.numba_cuda.online_attention import launch_online
from llmref.ref.sdpa import sdpa_args


def sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    acc = compute_dtype(q.dtype)
    out = Guarded(q.shape[:3] + (v.shape[3],), acc, "numba-cuda sdpa")  # (B, Hq, Lq, Dv)
    lse = cuda.device_array(q.shape[:3], dtype=acc)  # (B, Hq, Lq), not returned
    launch_online(cuda.to_device(widen(q)), cuda.to_device(widen(k)), cuda.to_device(widen(v)),
                  cuda.to_device(np.ascontiguousarray(key_padding_mask)), out.device, lse,
                  causal=causal, window=window, scale=scale, block_size=1)  # blocks of one key
    return out.result().astype(q.dtype)
