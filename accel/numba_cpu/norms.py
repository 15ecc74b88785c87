"""LayerNorm, RMSNorm and BatchNorm as numba.njit loops (reference: llmref.ref.norms).

Rows are contiguous (rows, n) arrays in the compute dtype (float64, or float32 for every
narrower float); statistics take two passes (mean, then squared deviations).
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.norms import batchnorm_args, layernorm_args, rmsnorm_args


@numba.njit(cache=True)
def _layernorm_rows(x, weight, bias, eps, out):
    """out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias."""
    n = x.shape[1]
    for r in range(x.shape[0]):
        s = 0.0
        for j in range(n):
            s += x[r, j]
        mean = s / n
        ss = 0.0
        for j in range(n):
            d = x[r, j] - mean
            ss += d * d
        inv_std = 1.0 / math.sqrt(ss / n + eps)
        for j in range(n):
            out[r, j] = (x[r, j] - mean) * inv_std * weight[j] + bias[j]


@numba.njit(cache=True)
def _rmsnorm_rows(x, weight, eps, weight_offset, out):
    """out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * (weight_offset + weight)."""
    n = x.shape[1]
    for r in range(x.shape[0]):
        ss = 0.0
        for j in range(n):
            ss += x[r, j] * x[r, j]
        inv_rms = 1.0 / math.sqrt(ss / n + eps)
        for j in range(n):
            out[r, j] = x[r, j] * inv_rms * (weight_offset + weight[j])


@numba.njit(cache=True)
def _channel_stats(x, mean, var):
    """Per-channel mean and biased variance of x (N, C, S)."""
    count = x.shape[0] * x.shape[2]
    for c in range(x.shape[1]):
        s = 0.0
        for i in range(x.shape[0]):
            for k in range(x.shape[2]):
                s += x[i, c, k]
        m = s / count
        ss = 0.0
        for i in range(x.shape[0]):
            for k in range(x.shape[2]):
                d = x[i, c, k] - m
                ss += d * d
        mean[c] = m
        var[c] = ss / count


@numba.njit(cache=True)
def _normalise_channels(x, mean, var, weight, bias, eps, out):
    for c in range(x.shape[1]):
        scale = weight[c] / math.sqrt(var[c] + eps)
        for i in range(x.shape[0]):
            for k in range(x.shape[2]):
                out[i, c, k] = (x[i, c, k] - mean[c]) * scale + bias[c]


def _rows(x):
    """x as contiguous (rows, n) in its compute dtype; n = x.shape[-1]."""
    return widen(x).reshape(math.prod(x.shape[:-1]), x.shape[-1])


def layernorm(x, weight, bias, eps=1e-5):
    x, weight, bias, eps = layernorm_args(x, weight, bias, eps)
    if x.size == 0:  # nothing to normalise
        return x.copy()
    weight, bias = widen(weight), widen(bias)
    rows = _rows(x)  # (rows, n)
    out = np.empty_like(rows)
    _layernorm_rows(rows, weight, bias, rows.dtype.type(eps), out)
    return out.reshape(x.shape).astype(x.dtype)


def rmsnorm(x, weight, eps=1e-6, weight_offset=0.0):
    x, weight, eps, weight_offset = rmsnorm_args(x, weight, eps, weight_offset)
    if x.size == 0:  # nothing to normalise
        return x.copy()
    weight = widen(weight)
    rows = _rows(x)  # (rows, n)
    out = np.empty_like(rows)
    _rmsnorm_rows(rows, weight, rows.dtype.type(eps), rows.dtype.type(weight_offset), out)
    return out.reshape(x.shape).astype(x.dtype)


def batchnorm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    x, *vectors, momentum, eps = batchnorm_args(x, weight, bias, running_mean, running_var,
                                                training, momentum, eps)
    weight, bias, running_mean, running_var = (widen(v) for v in vectors)
    channels = x.shape[1]
    cube = widen(x).reshape(x.shape[0], channels, math.prod(x.shape[2:]))  # (N, C, S)
    n = cube.shape[0] * cube.shape[2]
    if training:
        mean, var = np.empty_like(weight), np.empty_like(weight)
        _channel_stats(cube, mean, var)
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * (var * (n / (n - 1)))
    else:
        mean, var = running_mean, running_var
        new_mean, new_var = running_mean, running_var
    out = np.empty_like(cube)
    _normalise_channels(cube, mean, var, weight, bias, cube.dtype.type(eps), out)
    return (out.reshape(x.shape).astype(x.dtype), new_mean.astype(x.dtype), new_var.astype(x.dtype))
