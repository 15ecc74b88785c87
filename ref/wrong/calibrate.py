"""Wrong calibrators seen in the wild (specs/calibrate.yaml); each must fail its audit."""
import numpy as np

from llmref.ref import calibrate as ref


def calibrate_signed_max(x, method="minmax", num_bits=8, unsigned=False, num_bins=2048,
                         percentile=99.99, start_bin=128):
    """amax = max x: a large negative sample is ignored."""
    if method != "minmax":
        return ref.calibrate(x, method, num_bits, unsigned, num_bins, percentile, start_bin)
    bound = 2 ** (num_bits - 1 + int(unsigned)) - 1
    amax = np.asarray(x, np.float64).max()
    return np.array([amax]), np.array([amax / bound])


def calibrate_zero_bin_kept(x, method="minmax", num_bits=8, unsigned=False, num_bins=2048,
                            percentile=99.99, start_bin=128):
    """The KL search on the raw histogram: counts[0] (exact zeros) is not replaced by counts[1]."""
    if method != "entropy":
        return ref.calibrate(x, method, num_bits, unsigned, num_bins, percentile, start_bin)
    bins, edges = ref.abs_histogram(np.asarray(x, np.float64), num_bins)
    nbins = 1 << (num_bits - 1 + int(unsigned))
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        slot = np.digitize(np.arange(i), np.linspace(0, i, num=nbins + 1)) - 1
        nonzero = bins[:i] != 0
        totals = np.bincount(slot[nonzero], weights=bins[:i][nonzero], minlength=nbins)
        mean = totals / np.maximum(np.bincount(slot[nonzero], minlength=nbins), 1)
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        divergences.append(ref.kl_divergence(p, np.where(nonzero, mean[slot], 0.0)))
    amax = edges[start_bin + len(divergences) - 1 - int(np.argmin(np.array(divergences)[::-1]))]
    bound = 2 ** (num_bits - 1 + int(unsigned)) - 1
    return np.array([amax]), np.array([amax / bound])


def calibrate_percentile_next_edge(x, method="minmax", num_bits=8, unsigned=False, num_bins=2048,
                                   percentile=99.99, start_bin=128):
    """The percentile's bin upper edge: edges[i + 1]."""
    if method != "percentile":
        return ref.calibrate(x, method, num_bits, unsigned, num_bins, percentile, start_bin)
    counts, edges = ref.abs_histogram(np.asarray(x, np.float64), num_bins)
    cdf = np.cumsum(counts / counts.sum())
    amax = edges[min(np.searchsorted(cdf, percentile / 100) + 1, num_bins)]
    bound = 2 ** (num_bits - 1 + int(unsigned)) - 1
    return np.array([amax]), np.array([amax / bound])
