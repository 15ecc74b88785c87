"""LayerNorm, RMSNorm and BatchNorm as numba.cuda kernels.

LayerNorm and RMSNorm: one thread block per row; BatchNorm: one block per channel. Each
block strides over its values, then reduces the per-thread partial sums in shared memory
(tree reduction over THREADS lanes). float16/bfloat16 inputs are widened to float32 on the
host and the outputs rounded once back.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.norms import batchnorm_args, layernorm_args, rmsnorm_args

# A warp-sized block under the simulator, where every thread is a Python thread.
THREADS = 32 if simulated() else 128


def _make_kernels(dtype):
    @cuda.jit(device=True)
    def block_sum(value, shared):
        """Sum of `value` over the block's threads, returned to every thread."""
        tid = cuda.threadIdx.x
        shared[tid] = value
        cuda.syncthreads()
        stride = THREADS // 2
        while stride > 0:
            if tid < stride:
                shared[tid] += shared[tid + stride]
            cuda.syncthreads()
            stride //= 2
        total = shared[0]
        cuda.syncthreads()  # shared[] is reused by the next reduction
        return total

    @cuda.jit
    def layernorm_rows(x, weight, bias, eps, out):
        row, tid, n = cuda.blockIdx.x, cuda.threadIdx.x, x.shape[1]
        shared = cuda.shared.array(THREADS, dtype)
        s = 0.0
        for j in range(tid, n, THREADS):
            s += x[row, j]
        mean = block_sum(s, shared) / n
        ss = 0.0
        for j in range(tid, n, THREADS):
            d = x[row, j] - mean
            ss += d * d
        inv_std = 1.0 / math.sqrt(block_sum(ss, shared) / n + eps)
        for j in range(tid, n, THREADS):
            out[row, j] = (x[row, j] - mean) * inv_std * weight[j] + bias[j]

    @cuda.jit
    def rmsnorm_rows(x, weight, eps, weight_offset, out):
        row, tid, n = cuda.blockIdx.x, cuda.threadIdx.x, x.shape[1]
        shared = cuda.shared.array(THREADS, dtype)
        ss = 0.0
        for j in range(tid, n, THREADS):
            ss += x[row, j] * x[row, j]
        inv_rms = 1.0 / math.sqrt(block_sum(ss, shared) / n + eps)
        for j in range(tid, n, THREADS):
            out[row, j] = x[row, j] * inv_rms * (weight_offset + weight[j])

    @cuda.jit
    def channel_stats(x, mean, var):
        """mean[c], var[c] (biased) over x[:, c, :] of x (N, C, S); block c."""
        c, tid = cuda.blockIdx.x, cuda.threadIdx.x
        spatial, count = x.shape[2], x.shape[0] * x.shape[2]
        shared = cuda.shared.array(THREADS, dtype)
        s = 0.0
        for k in range(tid, count, THREADS):
            s += x[k // spatial, c, k % spatial]
        m = block_sum(s, shared) / count
        ss = 0.0
        for k in range(tid, count, THREADS):
            d = x[k // spatial, c, k % spatial] - m
            ss += d * d
        v = block_sum(ss, shared) / count
        if tid == 0:
            mean[c] = m
            var[c] = v

    @cuda.jit
    def normalise_channels(x, mean, var, weight, bias, eps, out):
        c, tid = cuda.blockIdx.x, cuda.threadIdx.x
        spatial, count = x.shape[2], x.shape[0] * x.shape[2]
        scale = weight[c] / math.sqrt(var[c] + eps)
        for k in range(tid, count, THREADS):
            i, s = k // spatial, k % spatial
            out[i, c, s] = (x[i, c, s] - mean[c]) * scale + bias[c]

    return {"layernorm": layernorm_rows, "rmsnorm": rmsnorm_rows,
            "channel_stats": channel_stats, "normalise_channels": normalise_channels}


_KERNELS = {}


def _kernel(name, dtype):
    if dtype not in _KERNELS:
        _KERNELS[dtype] = _make_kernels(float64 if dtype == np.float64 else float32)
    return _KERNELS[dtype][name]


def _guarded_output(shape, dtype):
    n = int(np.prod(shape))
    d_buf = cuda.to_device(guarded_host_buffer(n, dtype))
    return d_buf, interior(d_buf, n).reshape(shape)


def _checked(d_buf, shape, what):
    n = int(np.prod(shape))
    buf = d_buf.copy_to_host()
    check_guards(buf, n, f"numba-cuda {what}")
    return interior(buf, n).reshape(shape)


def _rows(x):
    """x as contiguous (rows, n) in its compute dtype; n = x.shape[-1]."""
    return widen(x).reshape(math.prod(x.shape[:-1]), x.shape[-1])


def layernorm(x, weight, bias, eps=1e-5):
    x, weight, bias, eps = layernorm_args(x, weight, bias, eps)
    if x.size == 0:  # nothing to normalise, and no blocks to launch
        return x.copy()
    weight, bias = widen(weight), widen(bias)
    rows = _rows(x)  # (rows, n)
    d_buf, d_out = _guarded_output(rows.shape, rows.dtype)
    _kernel("layernorm", rows.dtype)[rows.shape[0], THREADS](
        cuda.to_device(rows), cuda.to_device(weight), cuda.to_device(bias), rows.dtype.type(eps), d_out)
    return _checked(d_buf, rows.shape, "layernorm").reshape(x.shape).astype(x.dtype)


def rmsnorm(x, weight, eps=1e-6, weight_offset=0.0):
    x, weight, eps, weight_offset = rmsnorm_args(x, weight, eps, weight_offset)
    if x.size == 0:  # nothing to normalise, and no blocks to launch
        return x.copy()
    weight = widen(weight)
    rows = _rows(x)  # (rows, n)
    d_buf, d_out = _guarded_output(rows.shape, rows.dtype)
    _kernel("rmsnorm", rows.dtype)[rows.shape[0], THREADS](
        cuda.to_device(rows), cuda.to_device(weight), rows.dtype.type(eps),
        rows.dtype.type(weight_offset), d_out)
    return _checked(d_buf, rows.shape, "rmsnorm").reshape(x.shape).astype(x.dtype)


def batchnorm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    x, *vectors, momentum, eps = batchnorm_args(x, weight, bias, running_mean, running_var,
                                                training, momentum, eps)
    if x.size == 0:  # no channels, or (evaluation) no values: statistics unchanged, no blocks
        return x.copy(), vectors[2].copy(), vectors[3].copy()
    weight, bias, running_mean, running_var = (widen(v) for v in vectors)
    channels = x.shape[1]
    cube = widen(x).reshape(x.shape[0], channels, math.prod(x.shape[2:]))  # (N, C, S)
    n = cube.shape[0] * cube.shape[2]
    d_cube = cuda.to_device(cube)
    if training:
        d_mean, d_var = cuda.device_array(channels, cube.dtype), cuda.device_array(channels, cube.dtype)
        _kernel("channel_stats", cube.dtype)[channels, THREADS](d_cube, d_mean, d_var)
        mean, var = d_mean.copy_to_host(), d_var.copy_to_host()
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * (var * (n / (n - 1)))
    else:
        mean, var = running_mean, running_var
        new_mean, new_var = running_mean, running_var
    d_buf, d_out = _guarded_output(cube.shape, cube.dtype)
    _kernel("normalise_channels", cube.dtype)[channels, THREADS](
        d_cube, cuda.to_device(mean), cuda.to_device(var), cuda.to_device(weight),
        cuda.to_device(bias), cube.dtype.type(eps), d_out)
    y = _checked(d_buf, cube.shape, "batchnorm")
    return y.reshape(x.shape).astype(x.dtype), new_mean.astype(x.dtype), new_var.astype(x.dtype)
