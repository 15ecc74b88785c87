"""LayerNorm, RMSNorm and BatchNorm on numba-cuda (reference: llmref.ref.norm): one thread
block per row (LayerNorm, RMSNorm) or per channel (BatchNorm). Each pass of
llmref.accel.kernels.norm runs on every thread over its stride of the values, and the block
sums the partial sums in shared memory (llmref.accel.numba_cuda._reduce) before the next
pass. Checked by the reference's <name>_args; float16/bfloat16 inputs are widened to float32
on the host and the outputs rounded once; BatchNorm's running statistics are updated on the
host by the reference's running_statistics.
"""
import math
from functools import lru_cache

import numpy as np
from numba import cuda, float32, float64

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import norm as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded
from llmref.accel.numba_cuda._reduce import block_reduce
from llmref.ref.norm import batchnorm_args, layernorm_args, rmsnorm_args, running_statistics

_row_sum = cuda.jit(device=True)(kernels.row_sum)
_row_squared_deviations = cuda.jit(device=True)(kernels.row_squared_deviations)
_row_squares = cuda.jit(device=True)(kernels.row_squares)
_layernorm_row = cuda.jit(device=True)(kernels.layernorm_row)
_rmsnorm_row = cuda.jit(device=True)(kernels.rmsnorm_row)
_channel_sum = cuda.jit(device=True)(kernels.channel_sum)
_channel_squared_deviations = cuda.jit(device=True)(kernels.channel_squared_deviations)
_normalise_channel = cuda.jit(device=True)(kernels.normalise_channel)


@lru_cache(maxsize=None)
def _kernels(dtype):
    """The block kernels whose shared memory holds `dtype` (float32 or float64) partials."""
    shared_dtype = float64 if dtype == np.float64 else float32

    @cuda.jit
    def layernorm_rows(x, weight, bias, eps, out):
        r, tid, n = cuda.blockIdx.x, cuda.threadIdx.x, x.shape[1]
        shared = cuda.shared.array(THREADS, shared_dtype)
        mean = block_reduce(_row_sum(x, r, tid, THREADS), shared, False) / n
        ss = block_reduce(_row_squared_deviations(x, r, mean, tid, THREADS), shared, False)
        _layernorm_row(x, r, mean, 1.0 / math.sqrt(ss / n + eps), weight, bias, tid, THREADS, out)

    @cuda.jit
    def rmsnorm_rows(x, weight, eps, weight_offset, out):
        r, tid = cuda.blockIdx.x, cuda.threadIdx.x
        shared = cuda.shared.array(THREADS, shared_dtype)
        ss = block_reduce(_row_squares(x, r, tid, THREADS), shared, False)
        _rmsnorm_row(x, r, 1.0 / math.sqrt(ss / x.shape[1] + eps), weight, weight_offset, tid,
                     THREADS, out)

    @cuda.jit
    def channel_stats(x, mean, var):
        """mean[c] and var[c] (biased) of x[:, c, :], x (N, C, S); block c."""
        c, tid = cuda.blockIdx.x, cuda.threadIdx.x
        count = x.shape[0] * x.shape[2]
        shared = cuda.shared.array(THREADS, shared_dtype)
        m = block_reduce(_channel_sum(x, c, tid, THREADS), shared, False) / count
        v = block_reduce(_channel_squared_deviations(x, c, m, tid, THREADS), shared, False) / count
        if tid == 0:
            mean[c] = m
            var[c] = v

    @cuda.jit
    def normalise_channels(x, mean, var, weight, bias, eps, out):
        _normalise_channel(x, cuda.blockIdx.x, mean, var, weight, bias, eps, cuda.threadIdx.x,
                           THREADS, out)

    return {"layernorm": layernorm_rows, "rmsnorm": rmsnorm_rows,
            "channel_stats": channel_stats, "normalise_channels": normalise_channels}


def _per_row(name, x, *operands):
    """Kernel `name` with one block per row of checked, non-empty x (rows, n = x.shape[-1])
    in its compute dtype, then operands, then the guarded output; the result in x's shape and
    dtype."""
    rows = widen(x).reshape(math.prod(x.shape[:-1]), x.shape[-1])  # (rows, n)
    out = Guarded(rows.shape, rows.dtype, f"numba-cuda {name}")
    _kernels(rows.dtype)[name][rows.shape[0], THREADS](cuda.to_device(rows), *operands, out.device)
    return out.result().reshape(x.shape).astype(x.dtype)


def layernorm(x, weight, bias, eps=1e-5):
    x, weight, bias, eps = layernorm_args(x, weight, bias, eps)
    if x.size == 0:  # nothing to normalise, and no blocks to launch
        return x.copy()
    acc = compute_dtype(x.dtype)
    return _per_row("layernorm", x, cuda.to_device(widen(weight)), cuda.to_device(widen(bias)), acc.type(eps))


def rmsnorm(x, weight, eps=1e-6, weight_offset=0.0):
    x, weight, eps, weight_offset = rmsnorm_args(x, weight, eps, weight_offset)
    if x.size == 0:  # nothing to normalise, and no blocks to launch
        return x.copy()
    acc = compute_dtype(x.dtype)
    return _per_row("rmsnorm", x, cuda.to_device(widen(weight)), acc.type(eps), acc.type(weight_offset))


def batchnorm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    x, *vectors, momentum, eps = batchnorm_args(x, weight, bias, running_mean, running_var,
                                                training, momentum, eps)
    if x.size == 0:  # no channels, or (evaluation) no values: statistics unchanged, no blocks
        return x.copy(), vectors[2].copy(), vectors[3].copy()
    weight, bias, running_mean, running_var = (widen(v) for v in vectors)
    channels = x.shape[1]
    cube = widen(x).reshape(x.shape[0], channels, math.prod(x.shape[2:]))  # (N, C, S)
    kernel = _kernels(cube.dtype)
    d_cube = cuda.to_device(cube)
    if training:
        d_mean, d_var = (cuda.device_array(channels, cube.dtype) for _ in range(2))
        kernel["channel_stats"][channels, THREADS](d_cube, d_mean, d_var)  # a block per channel
        mean, var = d_mean.copy_to_host(), d_var.copy_to_host()
        new_mean, new_var = running_statistics(running_mean, running_var, mean, var,
                                               cube.shape[0] * cube.shape[2], momentum)
    else:
        mean, var = new_mean, new_var = running_mean, running_var
    out = Guarded(cube.shape, cube.dtype, "numba-cuda batchnorm")
    kernel["normalise_channels"][channels, THREADS](
        d_cube, cuda.to_device(mean), cuda.to_device(var), cuda.to_device(weight),
        cuda.to_device(bias), cube.dtype.type(eps), out.device)
    return (out.result().reshape(x.shape).astype(x.dtype), new_mean.astype(x.dtype),
            new_var.astype(x.dtype))
