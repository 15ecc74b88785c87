"""A wrong W8A8 matmul seen in the wild (specs/w8a8_matmul.yaml); it must fail its audit."""
import numpy as np


def w8a8_int16_accumulator(x_q, w_q, x_scale, w_scale):
    """The int8 x int8 products summed in an int16 accumulator, which wraps."""
    wrapped = np.zeros((x_q.shape[0], w_q.shape[0]), np.int16)
    for k in range(x_q.shape[1]):
        prod = x_q[:, k:k + 1].astype(np.int16) * w_q[:, k].astype(np.int16)[None, :]
        wrapped = (wrapped.astype(np.int32) + prod).astype(np.int16)  # wraps modulo 2^16
    y = wrapped.astype(x_scale.dtype) * x_scale[:, None] * w_scale[None, :]
    return wrapped.astype(np.int32), y
