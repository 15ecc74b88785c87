"""Post-training calibration of a symmetric clipping range, and quantized memory sizes
(specs/calibrate.yaml, specs/quant_memory.yaml).

Calibration follows NVIDIA pytorch-quantization's MaxCalibrator and HistogramCalibrator
(calib/max.py, calib/histogram.py): a histogram of |x| with `num_bins` bins over [0, max|x|],
then amax by min-max, percentile, MSE search or KL-divergence (entropy) search; the scale is
amax / (2^(b-1) - 1) for signed codes, amax / (2^b - 1) for unsigned ones.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, int_array

METHODS = ("minmax", "percentile", "mse", "entropy")


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


def calibrate_args(x, method, num_bits, unsigned, num_bins, percentile, start_bin):
    """Validated x (flat float64) of calibrate; every bad param is an InputError naming it."""
    x = float_array("x", x, min_ndim=1)
    if method not in METHODS:
        raise InputError(f"method: must be one of {METHODS}, got {method!r}")
    for name, value, low, high in (("num_bits", num_bits, 2, 16), ("num_bins", num_bins, 1, None),
                                   ("start_bin", start_bin, 1, None)):
        if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low
                or (high is not None and value > high)):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise InputError(f"{name}: must be an integer {bound}, got {value!r}")
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


# ----------------------------------------------------------------------------- memory

def quant_memory(numel, bits, group_size=128, zero_points=True):
    """Exact bytes of a per-layer bit-width plan, and the rule-of-thumb estimate.

    For a weight of `numel` elements at b < 16 bits, quantized in groups of `group_size`:
      data   = ceil(numel * b / 8)                   packed codes
      scales = 2 * numel / group_size                one fp16 scale per group
      zeros  = ceil((numel / group_size) * b / 8)    packed b-bit zero-points (if zero_points)
    b = 16 means an unquantized fp16/bf16 weight: 2 bytes per element, no scales or zeros.
    estimate = numel * 4 B * 1.2 / (32 / b)          (fp32 bytes scaled to b bits, +20 %)
    """
    numel = int_array("numel", numel, ndim=1, low=0)
    bits = int_array("bits", bits, ndim=1, low=2, high=17)
    if bits.shape != numel.shape:
        raise InputError(f"bits: has {bits.size} entries, numel has {numel.size}")
    bad = (bits != 16) & (bits > 8)
    if bad.any():
        raise InputError(f"bits: {int(bits[bad][0])} is neither 2..8 nor 16")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise InputError(f"group_size: must be a positive integer, got {group_size!r}")
    if not isinstance(zero_points, (bool, np.bool_)):
        raise InputError(f"zero_points: must be a bool, got {zero_points!r}")
    quantized = bits != 16
    if np.any(numel[quantized] % group_size):
        raise InputError(f"group_size: {group_size} does not divide every quantized numel")
    numel, bits = numel.astype(np.int64), bits.astype(np.int64)
    groups = numel // group_size
    data = np.where(quantized, -(-numel * bits // 8), 2 * numel)
    scales = np.where(quantized, 2 * groups, 0)
    zeros = np.where(quantized & bool(zero_points), -(-groups * bits // 8), 0)
    estimate = numel.astype(np.float64) * 4 * 1.2 / (32 / bits)
    return data, scales, zeros, data + scales + zeros, estimate


def seed_table_case(rng, L=15):
    """The seed's table: 1.5B, 7B, 9B, 40B and 70B parameters at 4, 8 and 16 bits (L = 15 rows)."""
    sizes = np.array([1.5e9, 7e9, 9e9, 40e9, 70e9], dtype=np.int64)
    return {"numel": np.repeat(sizes, 3), "bits": np.tile(np.array([4, 8, 16]), 5)}


def calib_samples(rng, N, RELU=0):
    """Activation-like samples: normal with 0.5 % outliers at 8 sigma; RELU=1 clamps at 0."""
    x = rng.normal(size=N)
    outliers = rng.choice(N, size=max(1, N // 200), replace=False)
    x[outliers] *= 8.0
    return {"x": np.maximum(x, 0.0) if RELU else x}
