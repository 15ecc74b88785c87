"""nf4_quantize: bad input, the round trip and the high-nibble-first layout, the tie model
(bitsandbytes-style float32 thresholds pass with the flips counted)."""
import numpy as np
import pytest

from _quant import assert_masks_mark_only_differing_alternatives, audit_flips, failures
from llmref import InputError
from llmref.accel.numba_cpu import nf4_quantize as fast
from llmref.accel.numba_cuda import nf4_quantize as cuda_quant
from llmref.cases import compute_at, make_inputs
from llmref.dtypes import round_to
from llmref.ref import nf4_quantize as ref
from llmref.spec import load_spec

RNG = np.random.default_rng(20261123)
F32 = np.float32

# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("impl", [ref.nf4_quantize, fast.nf4_quantize, cuda_quant.nf4_quantize])
def test_nan_input_is_rejected_naming_x(impl):
    x = RNG.normal(size=(4, 8))
    x[1, 2] = np.nan
    with pytest.raises(InputError, match="^x:"):
        impl(x.reshape(-1), block_size=32)


@pytest.mark.parametrize("impl", [ref.nf4_quantize, fast.nf4_quantize, cuda_quant.nf4_quantize])
@pytest.mark.parametrize("x,block_size,name", [
    (np.zeros(0), 64, "x"),
    (np.ones(96), 64, "x"),
    (np.ones(64), 3, "block_size"),
    (np.ones(64), 0, "block_size"),
    (np.ones((2, 32)), 32, "x"),
])
def test_nf4_rejects_bad_input(impl, x, block_size, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(x, block_size=block_size)


def test_packed_buffers_of_the_wrong_length_are_rejected():
    with pytest.raises(InputError, match="^packed:"):
        ref.nf4_dequantize(np.zeros(31, np.uint8), np.ones(1), 64)


def test_backends_validate_through_the_reference_checker():
    """Every accelerated entry point calls nf4_quantize_args before any kernel; none raises itself."""
    from pathlib import Path

    for module in (fast, cuda_quant,):
        text = Path(module.__file__).read_text()
        assert "nf4_quantize_args(" in text and "raise InputError" not in text, module.__name__


# ----------------------------------------------------------------------------- properties


def test_nf4_round_trip_and_layout():
    x = RNG.normal(size=128)
    packed, absmax, x_hat = ref.nf4_quantize(x)
    assert np.array_equal(ref.nf4_dequantize(packed, absmax), x_hat)
    codes = np.abs(x[:2] / absmax[0] - ref.NF4_CODEBOOK[:, None]).argmin(axis=0)
    assert packed[0] == codes[0] << 4 | codes[1]  # first element in the high nibble


# ----------------------------------------------------------------------------- ties


def test_nf4_float32_midpoints_stay_exact_ties():
    """The six midpoints that are float32 values (2, 6, 7, 9, 11, 13) are unmasked at float32;
    the nine others round off their midpoint and are accepted either side."""
    spec = load_spec("nf4_quantize")
    case = spec.case("midpoint_ties")
    at = compute_at(spec, case, make_inputs(spec, case), "float32")
    masked = np.flatnonzero(at.ties["x_hat"][0]) - 1  # element 0 is the absmax 1.0
    assert sorted(masked) == [0, 1, 3, 4, 5, 8, 10, 12, 14]


NF4_MIDPOINTS_F32 = round_to((ref.NF4_CODEBOOK[1:] + ref.NF4_CODEBOOK[:-1]) / 2, "float32")


def nf4_bitsandbytes_style(x, block_size=64):
    """bitsandbytes' kernels in NumPy float32: scaled = x * (1 / absmax), code = the number of
    float32 midpoint thresholds with scaled > threshold (dQuantizeNF4's decision tree)."""
    blocks = x.reshape(-1, block_size)
    absmax = np.abs(blocks).max(axis=1)
    scaled = blocks * (F32(1) / np.where(absmax == 0, F32(1), absmax))[:, None]
    codes = (scaled[..., None] > NF4_MIDPOINTS_F32).sum(axis=-1)
    book = ref.NF4_CODEBOOK.astype(F32)
    return ref.pack_nf4(codes), absmax, (book[codes] * absmax[:, None]).reshape(-1)


def test_nf4_bitsandbytes_style_float32_passes():
    report, flips = audit_flips("nf4_quantize", nf4_bitsandbytes_style)
    assert report.passed, failures(report)
    print("nf4 bitsandbytes-style tie flips:", flips)
    assert flips["midpoint_ties"] > 0  # 9 midpoints are no float32 value: the thresholds move


def test_ties_mark_only_elements_whose_alternative_differs():
    assert_masks_mark_only_differing_alternatives("nf4_quantize")
