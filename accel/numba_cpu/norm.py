"""LayerNorm, RMSNorm and BatchNorm on numba-cpu (reference: llmref.ref.norm): the rows are
spread over threads (prange; llmref.accel.numba_cpu._threads), each running the shared passes
of llmref.accel.kernels.norm over all of its values (the sums in any order, so they
vectorise); BatchNorm's channels are spread over threads, each taking the same two passes
(mean, then squared deviations) and the normalisation

    mean_c = sum x[:, c, :] / (N S),   var_c = sum (x[:, c, :] - mean_c)^2 / (N S)
    y[i, c, :] = (x[i, c, :] - mean_c) * weight_c / sqrt(var_c + eps) + bias_c

as loops over each sample's contiguous (S,) run: the shared channel passes index the flat
k = i * S + s by k // S, k % S, an integer division per value that made them 0.65x the NumPy
reference. Checked by the reference's <name>_args; float16/bfloat16 inputs are widened to
float32 (llmref.accel._host) and the outputs rounded once; BatchNorm's running statistics are
updated by the reference's running_statistics.
"""
import math

import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import norm as kernels
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.norm import batchnorm_args, layernorm_args, rmsnorm_args, running_statistics

SUMS = {"reassoc", "nsz"}  # the row sums in any order, so that LLVM vectorises them
_row_sum = numba.njit(cache=True, fastmath=SUMS)(kernels.row_sum)
_row_squared_deviations = numba.njit(cache=True, fastmath=SUMS)(kernels.row_squared_deviations)
_row_squares = numba.njit(cache=True, fastmath=SUMS)(kernels.row_squares)
_layernorm_row = numba.njit(cache=True)(kernels.layernorm_row)
_rmsnorm_row = numba.njit(cache=True)(kernels.rmsnorm_row)


@threaded_loop()
def _layernorm_rows(x, weight, bias, eps, out):
    n = x.shape[1]
    for row in numba.prange(x.shape[0]):
        r = np.int64(row)  # uint64 in the parfor body: callees would compile twice
        mean = _row_sum(x, r, 0, 1) / n
        inv_std = 1.0 / math.sqrt(_row_squared_deviations(x, r, mean, 0, 1) / n + eps)
        _layernorm_row(x, r, mean, inv_std, weight, bias, 0, 1, out)


@threaded_loop()
def _rmsnorm_rows(x, weight, eps, weight_offset, out):
    for row in numba.prange(x.shape[0]):
        r = np.int64(row)  # uint64 in the parfor body: callees would compile twice
        inv_rms = 1.0 / math.sqrt(_row_squares(x, r, 0, 1) / x.shape[1] + eps)
        _rmsnorm_row(x, r, inv_rms, weight, weight_offset, 0, 1, out)


@threaded_loop(fastmath=SUMS)  # sums in any order
def _channel_stats(x, mean, var):
    """mean[c] and var[c] (biased) of x[:, c, :], x (N, C, S); sums in float64."""
    count = x.shape[0] * x.shape[2]
    for c in numba.prange(x.shape[1]):
        total = 0.0
        for i in range(x.shape[0]):
            for j in range(x.shape[2]):
                total += x[i, c, j]
        m = total / count
        squares = 0.0
        for i in range(x.shape[0]):
            for j in range(x.shape[2]):
                d = x[i, c, j] - m
                squares += d * d
        mean[c] = m
        var[c] = squares / count


@threaded_loop()
def _normalise_channels(x, mean, var, weight, bias, eps, out):
    """out[i, c, :] = (x[i, c, :] - mean[c]) * weight[c] / sqrt(var[c] + eps) + bias[c]."""
    channels = x.shape[1]
    for row in numba.prange(x.shape[0] * channels):
        i, c = row // channels, row % channels
        scale = weight[c] / math.sqrt(var[c] + eps)
        for j in range(x.shape[2]):
            out[i, c, j] = (x[i, c, j] - mean[c]) * scale + bias[c]


def _per_row(rows_fn, x, *operands):
    """rows_fn(rows, *operands, out) over checked, non-empty x as (rows, n = x.shape[-1]) in
    its compute dtype; the result in x's shape and dtype."""
    rows = widen(x).reshape(math.prod(x.shape[:-1]), x.shape[-1])  # (rows, n)
    out = np.empty_like(rows)
    rows_fn(rows.size, rows, *operands, out)
    return out.reshape(x.shape).astype(x.dtype, copy=False)


def layernorm(x, weight, bias, eps=1e-5):
    x, weight, bias, eps = layernorm_args(x, weight, bias, eps)
    if x.size == 0:  # nothing to normalise
        return x.copy()
    return _per_row(_layernorm_rows, x, widen(weight), widen(bias), compute_dtype(x.dtype).type(eps))


def rmsnorm(x, weight, eps=1e-6, weight_offset=0.0):
    x, weight, eps, weight_offset = rmsnorm_args(x, weight, eps, weight_offset)
    if x.size == 0:  # nothing to normalise
        return x.copy()
    acc = compute_dtype(x.dtype)
    return _per_row(_rmsnorm_rows, x, widen(weight), acc.type(eps), acc.type(weight_offset))


def batchnorm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    x, *vectors, momentum, eps = batchnorm_args(x, weight, bias, running_mean, running_var,
                                                training, momentum, eps)
    weight, bias, running_mean, running_var = (widen(v) for v in vectors)
    cube = widen(x).reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))  # (N, C, S)
    if training:
        mean, var = np.empty_like(weight), np.empty_like(weight)
        _channel_stats(cube.size, cube, mean, var)
        new_mean, new_var = running_statistics(running_mean, running_var, mean, var,
                                               cube.shape[0] * cube.shape[2], momentum)
    else:
        mean, var = new_mean, new_var = running_mean, running_var
    out = np.empty_like(cube)
    _normalise_channels(cube.size, cube, mean, var, weight, bias, cube.dtype.type(eps), out)
    return out.reshape(x.shape).astype(x.dtype, copy=False), new_mean.astype(x.dtype), new_var.astype(x.dtype)
