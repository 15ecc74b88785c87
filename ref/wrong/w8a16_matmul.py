"""Wrong W8A16 matmuls seen in the wild (specs/w8a16_matmul.yaml); each must fail its audit."""
import numpy as np

from llmref.ref import w8a16_matmul as ref


def w8a16_scales_per_input_channel(x, w_q, scales, group_size=0):
    """Per-channel scales applied along K (the input channel) instead of N: W[n, k] = w_q[n, k] s[k]."""
    x = np.asarray(x)
    work = np.float64 if x.dtype == np.float64 else np.float32
    s = np.asarray(scales).astype(work)[:, 0]  # (N,) read as if it were (K,)
    w = np.asarray(w_q).astype(work) * s[None, :]  # (N, K), needs N == K
    return (x.astype(work) @ w.T).astype(x.dtype)


def w8a16_codes_as_uint8(x, w_q, scales, group_size=0):
    """int8 codes reinterpreted as uint8: -1 becomes 255."""
    x = np.asarray(x)
    work = np.float64 if x.dtype == np.float64 else np.float32
    g = x.shape[1] if group_size == 0 else group_size
    w = ref.dequantize_w8(np.asarray(w_q).view(np.uint8), np.asarray(scales).astype(work), g)
    return (x.astype(work) @ w.T).astype(x.dtype)
