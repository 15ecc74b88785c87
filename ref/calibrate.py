"""Post-training calibration of a symmetric clipping range (specs/calibrate.yaml).

Calibration follows NVIDIA pytorch-quantization's MaxCalibrator and HistogramCalibrator
(calib/max.py, calib/histogram.py): a histogram of |x| with `num_bins` bins over [0, max|x|],
then amax by min-max, percentile, MSE search or KL-divergence (entropy) search; the scale is
amax / (2^(b-1) - 1) for signed codes, amax / (2^b - 1) for unsigned ones.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, integer

METHODS = ("minmax", "percentile", "mse", "entropy")


def calibrate_args(x, method, num_bits, unsigned, num_bins, percentile, start_bin):
    """Validated x (flat float64) of calibrate; every bad param is an InputError naming it."""
    x = float_array("x", x, min_ndim=1)
    if method not in METHODS:
        raise InputError(f"method: must be one of {METHODS}, got {method!r}")
    integer("num_bits", num_bits, low=2, high=16)
    integer("num_bins", num_bins, low=1)
    integer("start_bin", start_bin, low=1)
    if not isinstance(unsigned, (bool, np.bool_)):
        raise InputError(f"unsigned: must be a bool, got {unsigned!r}")
    if (isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.integer, np.floating))
            or not 0 < percentile <= 100):
        raise InputError(f"percentile: must be a number in (0, 100], got {percentile!r}")
    if method in ("mse", "entropy") and not start_bin < num_bins:
        raise InputError(f"start_bin: must be below num_bins={num_bins}, got {start_bin!r}")
    if x.size == 0 or not np.any(x):
        raise InputError("x: needs at least one nonzero sample to set a range")
    return x.astype(np.float64).reshape(-1)


def calibrate(x, method="minmax", num_bits=8, unsigned=False, num_bins=2048, percentile=99.99,
              start_bin=128):
    """Calibrated clipping range of activation samples x: (amax, scale), each of shape (1,).

    minmax: amax = max|x|;  percentile / mse / entropy: on the |x| histogram (see above).
    scale = amax / (2^(b-1+unsigned) - 1).
    """
    x = calibrate_args(x, method, num_bits, unsigned, num_bins, percentile, start_bin)
    if method == "minmax":
        amax = np.abs(x).max()
    else:
        counts, edges = abs_histogram(x, num_bins)
        if method == "percentile":
            amax = amax_percentile(counts, edges, percentile)
        elif method == "mse":
            amax = amax_mse(counts, edges, num_bits, unsigned, start_bin)
        else:
            amax = amax_entropy(counts, edges, num_bits, unsigned, start_bin)
    bound = 2 ** (num_bits - 1 + int(unsigned)) - 1
    return np.array([amax]), np.array([amax / bound])


def abs_histogram(x, num_bins):
    """counts (num_bins,) of |x| over [0, max|x|] (last bin closed) and edges (num_bins + 1,)."""
    amax = np.abs(x).max()
    counts, edges = np.histogram(np.abs(x), bins=num_bins, range=(0.0, amax))
    return counts.astype(np.float64), edges


def amax_percentile(counts, edges, percentile):
    """edges[i] for the first bin i whose cumulative fraction reaches percentile / 100."""
    cdf = np.cumsum(counts / counts.sum())
    return edges[np.searchsorted(cdf, percentile / 100)]


def fake_quant_symmetric(v, amax, num_bits, unsigned):
    """pytorch-quantization fake_tensor_quant, narrow range:
    clamp(round_half_even(v * B / amax), -B or 0, B) / (B / amax),  B = 2^(b-1+unsigned) - 1."""
    bound = 2 ** (num_bits - 1 + int(unsigned)) - 1
    scale = bound / amax
    return np.clip(np.rint(v * scale), 0 if unsigned else -bound, bound) / scale


def amax_mse(counts, edges, num_bits, unsigned, start_bin):
    """The bin centre c_i (i >= start_bin) minimising mean_j counts_j (fq(c_j; c_i) - c_j)^2;
    the first minimum wins."""
    centers = (edges[1:] + edges[:-1]) / 2
    candidates = range(start_bin, len(centers))
    mses = [np.mean((fake_quant_symmetric(centers, centers[i], num_bits, unsigned) - centers) ** 2
                    * counts) for i in candidates]
    return centers[candidates[int(np.argmin(mses))]]


def kl_divergence(p, q):
    """sum p log(p / q) over p > 0 (p, q normalised); inf where p > 0 and q = 0, which includes
    a Q with no mass at all (a candidate range holding no sample: P is only the outlier mass)."""
    nz = p > 0
    if q.sum() == 0 or np.any(q[nz] == 0):
        return np.inf
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


def amax_entropy(counts, edges, num_bits, unsigned, start_bin):
    """TensorRT-style KL calibration (Migacz 2017; pytorch-quantization _compute_amax_entropy).

    counts[0] is replaced by counts[1] (the zero bin is dominated by exact zeros). For each
    candidate i in start_bin..num_bins: P = counts[:i] with the outlier mass sum(counts[i:])
    added to its last bin; Q merges counts[:i] into nbins = 2^(b-1+unsigned) equal slices of the
    bin index range, spreads each slice's total uniformly over its NON-zero source bins, and is
    0 where counts is 0. amax = edges[i*] for i* = the LAST minimiser of KL(P || Q).
    """
    bins = counts.copy()
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        slot = np.digitize(np.arange(i), space) - 1  # (i,) which merged bin each source bin joins
        nonzero = bins[:i] != 0
        totals = np.bincount(slot[nonzero], weights=bins[:i][nonzero], minlength=nbins)
        members = np.bincount(slot[nonzero], minlength=nbins)
        mean = totals / np.maximum(members, 1)
        q = np.where(nonzero, mean[slot], 0.0)
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        divergences.append(kl_divergence(p, q))
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return edges[start_bin + last_argmin]


# --- case generators (specs/calibrate.yaml) ---

def calib_samples(rng, N, RELU=0):
    """Activation-like samples: normal with 0.5 % outliers at 8 sigma; RELU=1 clamps at 0."""
    x = rng.normal(size=N)
    outliers = rng.choice(N, size=max(1, N // 200), replace=False)
    x[outliers] *= 8.0
    return {"x": np.maximum(x, 0.0) if RELU else x}
