"""Normalisation layers (specs/layernorm.yaml, rmsnorm.yaml, batchnorm.yaml).

Each computes in the precision of its float inputs. Statistics use two passes (mean first,
then the mean of squared deviations), never E[x^2] - E[x]^2, which cancels catastrophically
when |mean| >> std. An empty x (no rows, or rows of length 0) has nothing to normalise and
gives an empty result of the same shape.
"""
import math

import numpy as np

from llmref.errors import InputError
from llmref.validate import flag, float_array, positive, same_size


def _row_weight(name, w, x):
    """A float vector of length x.shape[-1] in the dtype of x."""
    w = float_array(name, w, ndim=1)
    same_size(name, w.shape[0], x.shape[-1], "the last axis of x")
    _same_dtype(name, w, x)
    return w


def _same_dtype(name, a, x):
    if a.dtype != x.dtype:
        raise InputError(f"{name}: has dtype {a.dtype} but x has {x.dtype}")


def layernorm_args(x, weight, bias, eps):
    """Validated (x, weight, bias, eps) of layernorm; every backend checks through this."""
    x = float_array("x", x, min_ndim=1)
    return x, _row_weight("weight", weight, x), _row_weight("bias", bias, x), \
        positive("eps", eps, allow_zero=True)


def rmsnorm_args(x, weight, eps, weight_offset):
    """Validated (x, weight, eps, weight_offset) of rmsnorm."""
    x = float_array("x", x, min_ndim=1)
    weight = _row_weight("weight", weight, x)
    eps = positive("eps", eps, allow_zero=True)
    if isinstance(weight_offset, bool) or not isinstance(weight_offset, (int, float)):
        raise InputError(f"weight_offset: expected a number, got {weight_offset!r}")
    return x, weight, eps, weight_offset


def batchnorm_args(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Validated (x, weight, bias, running_mean, running_var, momentum, eps) of batchnorm:
    per-channel vectors of length x.shape[1] in x's dtype, momentum in [0, 1], and at least
    two values per channel when training (the unbiased variance divides by n - 1)."""
    x = float_array("x", x, min_ndim=2)
    channels = x.shape[1]
    vectors = []
    for name, value in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                        ("running_var", running_var)):
        v = float_array(name, value, ndim=1)
        same_size(name, v.shape[0], channels, "the channel axis (1) of x")
        _same_dtype(name, v, x)
        vectors.append(v)
    if (vectors[3] < 0).any():
        raise InputError("running_var: contains a negative variance")
    flag("training", training)
    momentum = positive("momentum", momentum, allow_zero=True)
    if momentum > 1:
        raise InputError(f"momentum: must be in [0, 1], got {momentum!r}")
    eps = positive("eps", eps, allow_zero=True)
    n = math.prod(x.shape[:1] + x.shape[2:])  # values per channel
    if training and n < 2:
        raise InputError(f"x: training needs at least 2 values per channel, got {n}")
    return (x, *vectors, momentum, eps)


def running_statistics(running_mean, running_var, mean, var, n, momentum):
    """The running statistics after a training step, in the dtype of the statistics:

        running_mean' = (1 - momentum) * running_mean + momentum * mean
        running_var'  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)

    mean and var (C,) are the batch's mean and biased variance over n >= 2 values per channel;
    the running variance takes the unbiased one, as torch does. The backends update theirs
    through this too."""
    dtype = mean.dtype.type
    keep, rate = dtype(1 - momentum), dtype(momentum)
    unbiased = var * dtype(n / (n - 1))
    return keep * running_mean + rate * mean, keep * running_var + rate * unbiased


def layernorm(x, weight, bias, eps=1e-5):
    """y = (x - mean) / sqrt(var + eps) * weight + bias   over the last axis.

    var is the biased (population) variance mean((x - mean)^2); eps is inside the sqrt.
    """
    x, weight, bias, eps = layernorm_args(x, weight, bias, eps)
    if x.size == 0:
        return x.copy()
    eps = x.dtype.type(eps)
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)  # (..., 1)
    return centred / np.sqrt(var + eps) * weight + bias


def rmsnorm(x, weight, eps=1e-6, weight_offset=0.0):
    """y = x / sqrt(mean(x^2) + eps) * (weight_offset + weight)   over the last axis.

    weight_offset = 0 is Llama's RMSNorm; weight_offset = 1 is Gemma's, whose stored weight
    is zero-initialised and applied as (1 + w). The offset is added in the compute precision.
    """
    x, weight, eps, weight_offset = rmsnorm_args(x, weight, eps, weight_offset)
    if x.size == 0:
        return x.copy()
    eps = x.dtype.type(eps)
    mean_square = (x * x).mean(axis=-1, keepdims=True)  # (..., 1)
    return x / np.sqrt(mean_square + eps) * (x.dtype.type(weight_offset) + weight)


def batchnorm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation over every axis but 1 (the channel axis) of x, shape (N, C, ...).

    training=True:   y = (x - mean_b) / sqrt(var_b + eps) * weight + bias, with the batch
                     statistics over the n = N * prod(spatial) values of each channel and
                     var_b the biased variance; the running statistics become
                     running_mean' = (1 - momentum) * running_mean + momentum * mean_b
                     running_var'  = (1 - momentum) * running_var  + momentum * var_b * n/(n-1)
                     (the unbiased variance, as torch does).
    training=False:  y = (x - running_mean) / sqrt(running_var + eps) * weight + bias; the
                     running statistics are returned unchanged.
    Returns (y, running_mean', running_var').
    """
    x, weight, bias, running_mean, running_var, momentum, eps = batchnorm_args(
        x, weight, bias, running_mean, running_var, training, momentum, eps)
    channels = x.shape[1]
    eps = x.dtype.type(eps)
    per_channel = (1, channels) + (1,) * (x.ndim - 2)  # broadcast a (C,) vector against x
    reduce_axes = (0,) + tuple(range(2, x.ndim))
    if training:
        n = math.prod(x.shape[:1] + x.shape[2:])  # values per channel, >= 2 (checked)
        mean = x.mean(axis=reduce_axes)  # (C,)
        centred = x - mean.reshape(per_channel)
        var = (centred * centred).mean(axis=reduce_axes)  # (C,) biased
        new_mean, new_var = running_statistics(running_mean, running_var, mean, var, n, momentum)
    else:
        mean, var = running_mean, running_var
        centred = x - mean.reshape(per_channel)
        new_mean, new_var = running_mean.copy(), running_var.copy()
    scale = weight / np.sqrt(var + eps)  # (C,)
    y = centred * scale.reshape(per_channel) + bias.reshape(per_channel)
    return y, new_mean, new_var
