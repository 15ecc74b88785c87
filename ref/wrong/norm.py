"""Wrong normalisation variants seen in the wild; each must fail its audit."""
import numpy as np


def layernorm_eps_outside_sqrt(x, weight, bias, eps=1e-5):
    """(x - mean) / (std + eps): the Annotated-Transformer form, far off on low-variance rows."""
    mean = x.mean(axis=-1, keepdims=True)
    std = np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True))
    return (x - mean) / (std + x.dtype.type(eps)) * weight + bias


def layernorm_unbiased_variance(x, weight, bias, eps=1e-5):
    """Divides the squared deviations by N - 1 (torch.var's default) instead of N."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).sum(axis=-1, keepdims=True) / x.dtype.type(x.shape[-1] - 1)
    return (x - mean) / np.sqrt(var + x.dtype.type(eps)) * weight + bias


def rmsnorm_ignores_offset(x, weight, eps=1e-6, weight_offset=0.0):
    """Multiplies by w instead of (weight_offset + w): a Gemma checkpoint loaded into Llama's norm."""
    ms = (x * x).mean(axis=-1, keepdims=True)
    return x / np.sqrt(ms + x.dtype.type(eps)) * weight


def rmsnorm_eps_outside_sqrt(x, weight, eps=1e-6, weight_offset=0.0):
    """x / (rms + eps) instead of x / sqrt(mean(x^2) + eps)."""
    rms = np.sqrt((x * x).mean(axis=-1, keepdims=True))
    return x / (rms + x.dtype.type(eps)) * (x.dtype.type(weight_offset) + weight)


def batchnorm_variances_swapped(x, weight, bias, running_mean, running_var, training=True,
                                momentum=0.1, eps=1e-5):
    """Normalises with the unbiased variance and stores the biased one in running_var."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if not training:
        y = (x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + x.dtype.type(eps))
        return y * weight.reshape(shape) + bias.reshape(shape), running_mean, running_var
    n = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    biased = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    unbiased = biased * x.dtype.type(n / (n - 1))
    y = (x - mean.reshape(shape)) / np.sqrt(unbiased.reshape(shape) + x.dtype.type(eps))
    m = x.dtype.type(momentum)
    return (y * weight.reshape(shape) + bias.reshape(shape),
            (1 - m) * running_mean + m * mean, (1 - m) * running_var + m * biased)


def batchnorm_batch_stats_at_inference(x, weight, bias, running_mean, running_var,
                                       training=True, momentum=0.1, eps=1e-5):
    """Always normalises with batch statistics (model left in train mode at inference)."""
    from llmref.ref.norm import batchnorm

    y, new_mean, new_var = batchnorm(x, weight, bias, running_mean, running_var, True, momentum, eps)
    if training:
        return y, new_mean, new_var
    return y, running_mean, running_var
