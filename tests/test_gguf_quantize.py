"""gguf_quantize: bad input, the block bytes round trip, roundf on the float32 just below 0.5
(numba-cpu once rounded it to 1), the tie model (an FMA build and gguf-py pass), and the
gguf package's bytes."""
import numpy as np
import pytest

from _quant import (assert_exact_ties_unmasked, assert_masks_mark_only_differing_alternatives,
                    audit_flips, failures)
from llmref import InputError
from llmref.accel.numba_cpu import gguf_quantize as fast
from llmref.dtypes import round_to
from llmref.ref import gguf_quantize as ref

RNG = np.random.default_rng(20261123)
F32 = np.float32

# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("impl", [ref.gguf_quantize, fast.gguf_quantize])
@pytest.mark.parametrize("x,fmt,name", [
    (np.zeros(0), "Q4_0", "x"),
    (np.ones(48), "Q4_0", "x"),
    (np.ones(32), "Q5_0", "fmt"),
    (np.ones((1, 32)), "Q8_0", "x"),
])
def test_gguf_rejects_bad_input(impl, x, fmt, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(x, fmt=fmt)


def test_packed_buffers_of_the_wrong_length_are_rejected():
    with pytest.raises(InputError, match="^blocks:"):
        ref.gguf_dequantize(np.zeros((2, 17), np.uint8), "Q4_0")


def test_backends_validate_through_the_reference_checker():
    """Every accelerated entry point calls gguf_quantize_args before any kernel; none raises itself."""
    from pathlib import Path

    for module in (fast,):
        text = Path(module.__file__).read_text()
        assert "gguf_quantize_args(" in text and "raise InputError" not in text, module.__name__


# ----------------------------------------------------------------------------- properties


def test_gguf_dequantize_inverts_the_block_bytes():
    x = RNG.normal(size=96)
    for fmt in ("Q4_0", "Q4_1", "Q8_0"):
        blocks, x_hat = ref.gguf_quantize(x, fmt)
        assert np.array_equal(ref.gguf_dequantize(blocks, fmt), x_hat.astype(np.float32))


@pytest.mark.parametrize("impl", [ref.gguf_quantize, fast.gguf_quantize])
def test_q8_0_rounds_the_float_below_one_half_to_zero(impl):
    """ggml's roundf is exact: the largest float32 below 0.5 (0.5 - 2^-25) rounds to 0, while
    floor(|t| + 0.5f) rounds the sum to 1.0f first and gives 1. With max|x| = 127 the block
    scale d is 1 and id = 1, so t = x exactly; its mirror image and the exact halves are there
    too (ties away from zero)."""
    below_half = float(np.nextafter(F32(0.5), F32(0)))
    assert below_half == 0.5 - 2.0 ** -25 and F32(below_half) + F32(0.5) == F32(1)  # the trap
    x = np.zeros(32)
    x[:7] = [127.0, below_half, -below_half, 0.5, -0.5, 1.5, -2.5]
    blocks, x_hat = impl(x, "Q8_0")
    codes = blocks[0, 2:9].view(np.int8).tolist()
    assert codes == [127, 0, 0, 1, -1, 2, -3]
    assert x_hat[1] == 0 and x_hat[2] == 0


# ----------------------------------------------------------------------------- ties


def gguf_fma(x, fmt="Q4_0"):
    """ggml built with fused multiply-adds (gguf-py's emulation): x * id + 8.5 rounded once."""
    blocks = round_to(x, "float32").reshape(-1, 32)
    d, m, _, offset, rounding = ref.gguf_decisions(blocks, fmt)
    base = blocks if m is None else (blocks - m[:, None]).astype(F32)
    w = base.astype(np.float64) * ref.reciprocal(d).astype(np.float64)[:, None]
    q = rounding(round_to(w if offset is None else w + float(offset), "float32"))
    packed = ref.pack_gguf(fmt, d, m, q)
    return packed, ref.dequantize_gguf(packed, fmt)


def test_gguf_fma_build_float32_passes():
    report, flips = audit_flips("gguf_quantize", gguf_fma)
    assert report.passed, failures(report)
    print("gguf FMA tie flips:", flips)


@pytest.mark.parametrize("case_id", ["q4_0_ties", "q4_1_ties", "q8_0_ties"])
def test_exact_tie_cases_have_no_tie_mask_at_float32(case_id):
    assert_exact_ties_unmasked("gguf_quantize", case_id)


def test_ties_mark_only_elements_whose_alternative_differs():
    assert_masks_mark_only_differing_alternatives("gguf_quantize")


# ----------------------------------------------------------------------------- cross-checks


@pytest.mark.crosscheck
@pytest.mark.parametrize("fmt", ["Q4_0", "Q4_1", "Q8_0"])
def test_gguf_blocks_match_the_gguf_package(fmt):
    gguf = pytest.importorskip("gguf", reason="gguf-py is the cross-check for GGUF blocks")
    from gguf.quants import dequantize, quantize

    qtype = getattr(gguf.GGMLQuantizationType, fmt)
    x = np.concatenate([RNG.normal(size=32 * 20), np.zeros(32), (np.arange(32) - 12) / 8.0,
                        np.round(RNG.normal(size=32) * 4) / 4])
    blocks, x_hat = ref.gguf_quantize(x, fmt)
    theirs = quantize(x.astype(np.float32), qtype)
    assert np.array_equal(blocks.reshape(-1), theirs.reshape(-1))
    assert np.array_equal(dequantize(theirs, qtype).reshape(-1), x_hat.astype(np.float32))
    fast_blocks, _ = fast.gguf_quantize(x, fmt)
    assert np.array_equal(fast_blocks, blocks)


@pytest.mark.crosscheck
def test_gguf_py_passes_float32():
    gguf = pytest.importorskip("gguf", reason="gguf-py is the cross-check for GGUF blocks")
    from gguf.quants import dequantize, quantize

    def impl(x, fmt="Q4_0"):
        qtype = getattr(gguf.GGMLQuantizationType, fmt)
        blocks = quantize(x.astype(F32), qtype).reshape(-1, ref.BLOCK_BYTES[fmt])
        return blocks, dequantize(blocks.reshape(-1), qtype).reshape(-1).astype(F32)

    report, flips = audit_flips("gguf_quantize", impl)
    assert report.passed, failures(report)
    print("gguf-py tie flips:", flips)
