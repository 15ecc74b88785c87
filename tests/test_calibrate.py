"""calibrate: bad input named, the entropy search over empty ranges, and the vectorised KL
search against pytorch-quantization's published loop."""
import numpy as np
import pytest

from llmref import InputError
from llmref.ref import calibrate as ref

RNG = np.random.default_rng(20261123)


def test_calibration_rejects_nan_and_bad_arguments():
    calibrate = ref.calibrate
    x = RNG.normal(size=100)
    bad = x.copy()
    bad[3] = np.nan
    with pytest.raises(InputError, match="^x:"):
        calibrate(bad, "entropy")
    with pytest.raises(InputError, match="^method:"):
        calibrate(x, "kl")
    with pytest.raises(InputError, match="^num_bits:"):
        calibrate(x, num_bits=1)
    with pytest.raises(InputError, match="^x:"):
        calibrate(np.zeros(10))


@pytest.mark.parametrize("kwargs,name", [
    ({"method": "percentile", "num_bins": 0}, "num_bins"),  # was numpy's raw "`bins` must be positive"
    ({"method": "entropy", "num_bins": -3}, "num_bins"),
    ({"method": "percentile", "num_bins": 2.5}, "num_bins"),
    ({"method": "mse", "start_bin": 0}, "start_bin"),
    ({"method": "mse", "num_bins": 64, "start_bin": 64}, "start_bin"),
    ({"method": "entropy", "start_bin": "1"}, "start_bin"),
    ({"method": "percentile", "percentile": "99"}, "percentile"),
    ({"method": "percentile", "percentile": 0.0}, "percentile"),
    ({"num_bits": 17}, "num_bits"),
    ({"unsigned": "no"}, "unsigned"),
])
def test_calibration_names_every_bad_param(kwargs, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        ref.calibrate(RNG.normal(size=100), **kwargs)


def test_entropy_search_over_empty_candidate_ranges_is_defined():
    """Six samples in 2048 bins: most candidate ranges hold no sample, their Q has no mass and
    their KL is infinite (once NaN, which np.argmin would have picked)."""
    amax, scale = ref.calibrate(np.array([0.5, -7.25, 3.0, 1.0, -2.0, 6.5]), "entropy")
    assert np.isfinite(amax).all() and 0 < amax[0] <= 7.25 and scale[0] == amax[0] / 127


def _entropy_amax_as_published(hist, edges, num_bits, unsigned, start_bin):
    """pytorch-quantization's _compute_amax_entropy loop, transcribed (Counter and all)."""
    from collections import Counter

    bins = hist.copy()
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        new_density_counts = np.zeros(nbins)
        space = np.linspace(0, i, num=nbins + 1)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density_counts[digitized] += bins[idx]
        counter = Counter(digitized_space)
        for key, val in counter.items():
            if key != -1:
                new_density_counts[key] = new_density_counts[key] / val
        new_density = np.zeros(i)
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density[idx] = new_density_counts[digitized]
        reference = np.array(bins[:len(digitized_space)])
        reference[-1] += np.sum(bins[i:])
        p, q = reference / reference.sum(), new_density / new_density.sum()
        nz = p > 0
        divergences.append(np.inf if np.any(q[nz] == 0) else np.sum(p[nz] * np.log(p[nz] / q[nz])))
    divergences = np.array(divergences)
    return edges[len(divergences) - 1 - np.argmin(divergences[::-1]) + start_bin]


@pytest.mark.parametrize("relu", [0, 1])
def test_vectorised_entropy_search_equals_the_published_loop(relu):
    from llmref.ref.calibrate import abs_histogram, amax_entropy, calib_samples

    x = calib_samples(np.random.default_rng(relu), 3000, relu)["x"]
    counts, edges = abs_histogram(x, 256)
    assert amax_entropy(counts, edges, 8, bool(relu), 128) == \
        _entropy_amax_as_published(counts, edges, 8, bool(relu), 128)
