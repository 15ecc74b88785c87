"""LayerNorm, RMSNorm and BatchNorm passes (reference: llmref.ref.norm), shared by numba-cpu
and numba-cuda (see llmref.accel.kernels).

LayerNorm and RMSNorm normalise row r of x (rows, n); BatchNorm channel c of x (N, C, S),
whose N * S values are visited in the flat order k = i * S + s. Each pass visits the values
first, first + step, ...: numba-cpu a whole row (0, 1; its BatchNorm walks each sample's
contiguous run instead, llmref.accel.numba_cpu.norm); on numba-cuda a block owns
the row or channel, each of its THREADS threads takes the values (thread index, THREADS), and
the block sums the threads' partial sums in shared memory between the passes. Statistics take
two passes (mean, then squared deviations), never E[x^2] - E[x]^2.
"""
import math


def row_sum(x, r, first, step):
    """sum of the visited x[r, j]."""
    s = 0.0
    for j in range(first, x.shape[1], step):
        s += x[r, j]
    return s


def row_squared_deviations(x, r, mean, first, step):
    """sum of the visited (x[r, j] - mean)^2."""
    ss = 0.0
    for j in range(first, x.shape[1], step):
        d = x[r, j] - mean
        ss += d * d
    return ss


def row_squares(x, r, first, step):
    """sum of the visited x[r, j]^2."""
    ss = 0.0
    for j in range(first, x.shape[1], step):
        ss += x[r, j] * x[r, j]
    return ss


def layernorm_row(x, r, mean, inv_std, weight, bias, first, step, out):
    """out[r, j] = (x[r, j] - mean) * inv_std * weight[j] + bias[j], inv_std = 1 / sqrt(var + eps)."""
    for j in range(first, x.shape[1], step):
        out[r, j] = (x[r, j] - mean) * inv_std * weight[j] + bias[j]


def rmsnorm_row(x, r, inv_rms, weight, weight_offset, first, step, out):
    """out[r, j] = x[r, j] * inv_rms * (weight_offset + weight[j]), inv_rms = 1 / sqrt(mean(x^2) + eps)."""
    for j in range(first, x.shape[1], step):
        out[r, j] = x[r, j] * inv_rms * (weight_offset + weight[j])


def channel_sum(x, c, first, step):
    """sum of the visited x[i, c, s]."""
    spatial = x.shape[2]
    s = 0.0
    for k in range(first, x.shape[0] * spatial, step):
        s += x[k // spatial, c, k % spatial]
    return s


def channel_squared_deviations(x, c, mean, first, step):
    """sum of the visited (x[i, c, s] - mean)^2."""
    spatial = x.shape[2]
    ss = 0.0
    for k in range(first, x.shape[0] * spatial, step):
        d = x[k // spatial, c, k % spatial] - mean
        ss += d * d
    return ss


def normalise_channel(x, c, mean, var, weight, bias, eps, first, step, out):
    """out[i, c, s] = (x[i, c, s] - mean[c]) * weight[c] / sqrt(var[c] + eps) + bias[c]."""
    spatial = x.shape[2]
    scale = weight[c] / math.sqrt(var[c] + eps)
    for k in range(first, x.shape[0] * spatial, step):
        i, s = k // spatial, k % spatial
        out[i, c, s] = (x[i, c, s] - mean[c]) * scale + bias[c]
