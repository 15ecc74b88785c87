"""Quantization: bad input, round-trip properties, packing layouts and converters, and
cross-checks against gguf and torch (specs quantize_linear, fake_quant, gguf_quantize,
nf4_quantize, w4a16_matmul, w8a8_matmul)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from llmref import InputError
from llmref.accel.cupy import quant as cupy_host
from llmref.accel.cupy.quant import canonical_bytes, kernel_words
from llmref.accel.numba_cpu import quant as fast
from llmref.accel.numba_cuda import quant as cuda_quant
from llmref.ref import quant, quant_calib, quant_formats

RNG = np.random.default_rng(20261123)
FINITE = st.floats(-1e3, 1e3, allow_nan=False, width=64)


# ----------------------------------------------------------------------------- bad input

QUANTIZE_LINEAR = [quant.quantize_linear, fast.quantize_linear, cuda_quant.quantize_linear]


@pytest.mark.parametrize("impl", QUANTIZE_LINEAR)
@pytest.mark.parametrize("kwargs,name", [
    ({"granularity": "group", "axis": 1, "group_size": 5}, "group_size"),
    ({"granularity": "group", "axis": 1, "group_size": 0}, "group_size"),
    ({"bits": 9}, "bits"),
    ({"bits": 1}, "bits"),
    ({"scheme": "binary", "bits": 2}, "bits"),
    ({"scheme": "log"}, "scheme"),
    ({"granularity": "row"}, "granularity"),
    ({"granularity": "channel", "axis": 2}, "axis"),
    ({"signed": "yes"}, "signed"),
])
def test_quantize_linear_rejects_bad_arguments(impl, kwargs, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(RNG.normal(size=(4, 8)), **kwargs)


@pytest.mark.parametrize("impl", QUANTIZE_LINEAR)
def test_quantize_linear_rejects_an_empty_tensor(impl):
    with pytest.raises(InputError, match="^x:"):
        impl(np.zeros((0, 8)))


def test_nan_input_is_rejected_naming_x():
    x = RNG.normal(size=(4, 8))
    x[1, 2] = np.nan
    for fn in (quant.quantize_linear, fast.quantize_linear):
        with pytest.raises(InputError, match="^x:"):
            fn(x)
    with pytest.raises(InputError, match="^x:"):
        quant_formats.nf4_quantize(x.reshape(-1), block_size=32)


def test_dequantize_rejects_scales_of_the_wrong_shape():
    q, s, z, _ = quant.quantize_linear(RNG.normal(size=(4, 8)), granularity="channel", axis=1)
    with pytest.raises(InputError, match="^scale:"):
        quant.dequantize_linear(q, s.T, z, "channel", 1)
    with pytest.raises(InputError, match="^zero_point:"):
        quant.dequantize_linear(q, s, z.T, "channel", 1)


def _w4_operands(m=2, k=64, n=8, g=32):
    return quant.w4a16_case(np.random.default_rng(0), M=m, K=k, N=n, GS=g)


W4A16 = [quant.w4a16_matmul, fast.w4a16_matmul, cupy_host.w4a16_matmul]  # cupy: checked before cupy is imported


@pytest.mark.parametrize("impl", W4A16)
@pytest.mark.parametrize("change,name", [
    ({"w_packed": lambda o: o["w_packed"][:, :-1]}, "w_packed"),
    ({"w_packed": lambda o: o["w_packed"].astype(np.int32)}, "w_packed"),
    ({"scales": lambda o: o["scales"].T}, "scales"),
    ({"zeros": lambda o: o["zeros"][:, :1]}, "zeros"),
    ({"zeros": lambda o: o["zeros"] + 16}, "zeros"),  # a code out of range
    ({"group_size": 48}, "group_size"),  # does not divide K = 64
    ({"group_size": 1}, "group_size"),
    ({"group_size": 0}, "group_size"),
    ({"x": lambda o: o["x"][:0]}, "x"),  # M = 0
    ({"w_packed": lambda o: o["w_packed"][:0], "scales": lambda o: o["scales"][:0],
      "zeros": lambda o: o["zeros"][:0]}, "w_packed"),  # N = 0
])
def test_w4a16_rejects_bad_operands(impl, change, name):
    ops = dict(_w4_operands(), group_size=32)
    for key, value in change.items():
        ops[key] = value(ops) if callable(value) else value
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**ops)


@pytest.mark.parametrize("impl", W4A16)
def test_w4a16_rejects_an_odd_group_size_that_divides_k(impl):
    """G = 3 divides K = 192 but splits packed bytes; numba-cpu once disagreed with the
    reference by 2.9 on it. Every backend refuses it through w4a16_args."""
    ops = quant.w4a16_case(np.random.default_rng(1), M=5, K=192, N=40, GS=3)
    with pytest.raises(InputError, match="^group_size:"):
        impl(**ops, group_size=3)


def test_no_quant_backend_raises_input_error_itself():
    """Every accelerated quant entry point validates through the reference's *_args."""
    from pathlib import Path

    import llmref.accel

    root = Path(llmref.accel.__file__).parent
    for path in [root / "numba_cpu" / "quant.py", root / "numba_cpu" / "quant_extra.py",
                 root / "numba_cuda" / "quant.py", root / "numba_cuda" / "quant_extra.py",
                 root / "cupy" / "quant.py"]:
        assert "raise InputError" not in path.read_text(), path


@pytest.mark.parametrize("impl", [quant_formats.nf4_quantize, fast.nf4_quantize, cuda_quant.nf4_quantize])
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


@pytest.mark.parametrize("impl", [quant_formats.gguf_quantize, fast.gguf_quantize])
@pytest.mark.parametrize("x,fmt,name", [
    (np.zeros(0), "Q4_0", "x"),
    (np.ones(48), "Q4_0", "x"),
    (np.ones(32), "Q5_0", "fmt"),
    (np.ones((1, 32)), "Q8_0", "x"),
])
def test_gguf_rejects_bad_input(impl, x, fmt, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(x, fmt=fmt)


@pytest.mark.parametrize("impl", [quant.fake_quant, fast.fake_quant])
@pytest.mark.parametrize("kwargs,name", [
    ({"scale": 0.0}, "scale"),
    ({"scale": float("nan")}, "scale"),
    ({"zero_point": 300}, "zero_point"),
    ({"zero_point": 0.5}, "zero_point"),
    ({"quant_min": 5, "quant_max": 5, "zero_point": 5}, "quant_max"),
])
def test_fake_quant_rejects_bad_params(impl, kwargs, name):
    x = RNG.normal(size=6)
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(x, x, **kwargs)


@pytest.mark.parametrize("impl", [quant.w8a8_matmul, fast.w8a8_matmul])
@pytest.mark.parametrize("x_q,w_q,x_scale,w_scale,name", [
    (np.zeros((2, 4), np.int8), np.zeros((3, 5), np.int8), np.ones(2), np.ones(3), "w_q"),
    (np.zeros((2, 4), np.int8), np.zeros((3, 4), np.int8), np.ones(3), np.ones(3), "x_scale"),
    (np.full((2, 4), 200, np.int16), np.zeros((3, 4), np.int8), np.ones(2), np.ones(3), "x_q"),  # out of int8
    (np.zeros((0, 4), np.int8), np.zeros((3, 4), np.int8), np.ones(0), np.ones(3), "x_q"),
    (np.zeros((2, 0), np.int8), np.zeros((3, 0), np.int8), np.ones(2), np.ones(3), "x_q"),
    (np.zeros((2, 4), np.int8), np.zeros((0, 4), np.int8), np.ones(2), np.ones(0), "w_q"),
])
def test_w8a8_rejects_bad_operands(impl, x_q, w_q, x_scale, w_scale, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(x_q, w_q, x_scale, w_scale)


def test_packed_buffers_of_the_wrong_length_are_rejected():
    with pytest.raises(InputError, match="^packed:"):
        quant.unpack_int4(np.zeros((3, 5), np.uint8), 12)
    with pytest.raises(InputError, match="^packed:"):
        quant.unpack_int2(np.zeros(3, np.uint8), 16)
    with pytest.raises(InputError, match="^packed:"):
        quant_formats.nf4_dequantize(np.zeros(31, np.uint8), np.ones(1), 64)
    with pytest.raises(InputError, match="^blocks:"):
        quant_formats.gguf_dequantize(np.zeros((2, 17), np.uint8), "Q4_0")
    with pytest.raises(InputError, match="^q:"):
        quant.pack_int4(np.full((2, 4), 16))


def test_fake_quant_rejects_mismatched_gradients():
    x = RNG.normal(size=6)
    for impl in (quant.fake_quant, fast.fake_quant):
        with pytest.raises(InputError, match="^grad_y:"):
            impl(x, x[:5])


# ----------------------------------------------------------------------------- properties

@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.sampled_from([4, 8, 12])), elements=FINITE),
       st.integers(2, 8), st.sampled_from(["symmetric", "affine"]), st.booleans(),
       st.sampled_from([("tensor", 0, 0), ("channel", 0, 0), ("channel", 1, 0), ("group", 1, 4)]))
def test_round_trip_error_is_at_most_half_a_step_inside_the_range(x, bits, scheme, signed, layout):
    """|x - dequantize(quantize(x))| <= S/2 wherever x / S + Z lies inside [qmin, qmax]."""
    granularity, axis, group_size = layout
    q, s, z, x_hat = quant.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    s_full = quant.expand_params(s, x.shape, granularity, axis, group_size)
    z_full = quant.expand_params(z, x.shape, granularity, axis, group_size)
    qmin, qmax = quant.integer_range(bits, scheme, signed)
    inside = (x / s_full + z_full >= qmin - 0.5) & (x / s_full + z_full <= qmax + 0.5)
    slack = 1e-12 * (1 + np.abs(x))
    assert np.all(np.abs(x - x_hat)[inside] <= (s_full / 2 + slack)[inside])
    assert q.min() >= qmin and q.max() <= qmax
    if scheme == "symmetric":  # the range covers every x: nothing clips
        assert inside.all()


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.sampled_from([8, 16, 32])),
                  elements=st.integers(0, 15)))
def test_int4_and_int2_pack_round_trip(q):
    packed = quant.pack_int4(q)
    assert packed.shape == (q.shape[0], q.shape[1] // 2)
    assert np.array_equal(quant.unpack_int4(packed, q.shape[1]), q)
    assert np.array_equal(canonical_bytes(kernel_words(packed)), packed)
    q2 = q & 3
    assert np.array_equal(quant.unpack_int2(quant.pack_int2(q2), q.shape[1]), q2)


def test_canonical_nibble_order_is_low_first():
    """byte = q[2j] | q[2j+1] << 4; INT2: q[4j] in bits 0-1."""
    assert quant.pack_int4(np.array([1, 2, 3, 4])).tolist() == [0x21, 0x43]
    assert quant.pack_int2(np.array([1, 2, 3, 0])).tolist() == [1 | 2 << 2 | 3 << 4]


def test_kernel_words_hold_eight_consecutive_codes():
    q = RNG.integers(0, 16, size=(6, 64))
    words = kernel_words(quant.pack_int4(q))
    assert words.shape == (6, 8)
    for i in range(8):
        assert np.array_equal((words >> (4 * i)) & 0xF, q[:, i::8])


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([8, 16]), st.data())
def test_gptq_and_awq_converters_are_exact_both_ways(n8, groups, g, data):
    n, k = 8 * n8, groups * g
    q = data.draw(hnp.arrays(np.uint8, (n, k), elements=st.integers(0, 15)))
    zeros = data.draw(hnp.arrays(np.uint8, (n, groups), elements=st.integers(0, 15)))
    for to, back in ((quant.to_gptq, quant.from_gptq), (quant.to_awq, quant.from_awq)):
        q2, z2 = back(*to(q, zeros))
        assert np.array_equal(q2, q) and np.array_equal(z2, zeros)


def test_gptq_v1_stores_zero_minus_one_and_awq_its_order():
    q = np.tile(np.arange(16, dtype=np.uint8), (8, 2))  # (8, 32)
    zeros = np.array([[0], [1], [8], [15], [3], [4], [5], [6]], np.uint8)  # (8, 1)
    qweight, qzeros = quant.to_gptq(q, zeros)
    assert qweight.shape == (4, 8) and qzeros.shape == (1, 1)
    stored = (qzeros.view(np.uint32)[0, 0] >> (4 * np.arange(8))) & 0xF
    assert stored.tolist() == [15, 0, 7, 14, 2, 3, 4, 5]  # zero 0 wraps to 15 (the v1 quirk)
    assert (qweight.view(np.uint32)[0, 0] >> (4 * np.arange(8)) & 0xF).tolist() == list(range(8))
    q_cols = np.tile(np.arange(8, dtype=np.uint8)[:, None], (1, 32))  # q[n, k] = n
    aw, _ = quant.to_awq(q_cols, zeros)  # (K, N/8): slot i of every word holds column AWQ_ORDER[i]
    assert ((aw.view(np.uint32)[0, 0] >> (4 * np.arange(8))) & 0xF).tolist() == list(quant.AWQ_ORDER)


def test_nf4_round_trip_and_layout():
    x = RNG.normal(size=128)
    packed, absmax, x_hat = quant_formats.nf4_quantize(x)
    assert np.array_equal(quant_formats.nf4_dequantize(packed, absmax), x_hat)
    codes = np.abs(x[:2] / absmax[0] - quant_formats.NF4_CODEBOOK[:, None]).argmin(axis=0)
    assert packed[0] == codes[0] << 4 | codes[1]  # first element in the high nibble


def test_gguf_dequantize_inverts_the_block_bytes():
    x = RNG.normal(size=96)
    for fmt in ("Q4_0", "Q4_1", "Q8_0"):
        blocks, x_hat = quant_formats.gguf_quantize(x, fmt)
        assert np.array_equal(quant_formats.gguf_dequantize(blocks, fmt), x_hat.astype(np.float32))


@pytest.mark.parametrize("m,g", [(1, 128), (7, 64), (64, 128), (33, 64)])
@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_numba_w4a16_matches_the_reference_at_kernel_shapes(m, g, dtype):
    import ml_dtypes

    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    ops = quant.w4a16_case(np.random.default_rng(m), M=m, K=256, N=24, GS=g)
    ops["x"], ops["scales"] = ops["x"].astype(dt), ops["scales"].astype(dt)
    want = quant.w4a16_matmul(**ops, group_size=g).astype(np.float64)
    got = fast.w4a16_matmul(**ops, group_size=g).astype(np.float64)
    u = 2.0 ** -8 if dtype == "bfloat16" else 2.0 ** -11  # one output rounding each
    assert np.all(np.abs(got - want) <= 2 * u * np.abs(want) + 1e-3 * u * np.abs(want).max())


# ----------------------------------------------------------------------------- cross-checks

@pytest.mark.crosscheck
@pytest.mark.parametrize("fmt", ["Q4_0", "Q4_1", "Q8_0"])
def test_gguf_blocks_match_the_gguf_package(fmt):
    gguf = pytest.importorskip("gguf", reason="gguf-py is the cross-check for GGUF blocks")
    from gguf.quants import dequantize, quantize

    qtype = getattr(gguf.GGMLQuantizationType, fmt)
    x = np.concatenate([RNG.normal(size=32 * 20), np.zeros(32), (np.arange(32) - 12) / 8.0,
                        np.round(RNG.normal(size=32) * 4) / 4])
    blocks, x_hat = quant_formats.gguf_quantize(x, fmt)
    theirs = quantize(x.astype(np.float32), qtype)
    assert np.array_equal(blocks.reshape(-1), theirs.reshape(-1))
    assert np.array_equal(dequantize(theirs, qtype).reshape(-1), x_hat.astype(np.float32))
    fast_blocks, _ = fast.gguf_quantize(x, fmt)
    assert np.array_equal(fast_blocks, blocks)


@pytest.mark.crosscheck
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("scheme,signed", [("symmetric", True), ("affine", True),
                                           ("affine", False), ("symmetric", False)])
def test_quantize_matches_torch_per_tensor_and_per_channel(scheme, signed):
    torch = pytest.importorskip("torch", reason="torch quantize_per_* is the cross-check")
    x = RNG.normal(size=(6, 10)).astype(np.float32)  # torch quantizes float32 tensors
    dtype = torch.qint8 if signed else torch.quint8
    q, s, z, x_hat = quant.quantize_linear(x, 8, scheme, signed)
    tq = torch.quantize_per_tensor(torch.from_numpy(x), float(s.item()), int(z.item()), dtype)
    assert np.array_equal(tq.int_repr().numpy().astype(np.int32), q)
    assert np.allclose(tq.dequantize().numpy(), x_hat, rtol=0, atol=2 ** -23 * np.abs(x_hat).max())
    for axis in (0, 1):
        q, s, z, x_hat = quant.quantize_linear(x, 8, scheme, signed, "channel", axis)
        tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(s.reshape(-1)),
                                        torch.from_numpy(z.reshape(-1).astype(np.int64)), axis, dtype)
        assert np.array_equal(tq.int_repr().numpy().astype(np.int32), q)


@pytest.mark.crosscheck
def test_fake_quant_and_its_gradient_match_torch():
    torch = pytest.importorskip("torch", reason="torch fake_quantize_* is the cross-check")
    x = np.concatenate([RNG.normal(scale=4.0, size=200), [127.5, -128.5, 2.5, -2.5, 126.6, 300.0]])
    g = RNG.normal(size=x.size)
    for scale, zp, qmin, qmax in ((1.0, 0, -128, 127), (0.0625, 3, 0, 15), (0.03125, 0, -127, 127)):
        y, grad = quant.fake_quant(x, g, scale, zp, qmin, qmax)
        tx = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        ty = torch.fake_quantize_per_tensor_affine(tx, scale, zp, qmin, qmax)
        ty.backward(torch.tensor(g, dtype=torch.float32))
        y32, grad32 = quant.fake_quant(x.astype(np.float32), g.astype(np.float32), scale, zp, qmin, qmax)
        assert np.array_equal(ty.detach().numpy(), y32)
        assert np.array_equal(tx.grad.numpy(), grad32)
        assert np.array_equal(grad32 != 0, grad != 0)
    # per channel: one (scale, zero_point) per row
    xs = RNG.normal(size=(3, 40))
    tx = torch.tensor(xs, dtype=torch.float32, requires_grad=True)
    scales, zps = [0.0625, 0.125, 0.03125], [0, 2, -1]
    ty = torch.fake_quantize_per_channel_affine(tx, torch.tensor(scales), torch.tensor(zps, dtype=torch.int32),
                                                0, -8, 7)
    ty.backward(torch.ones_like(ty))
    for r in range(3):
        y, grad = quant.fake_quant(xs[r].astype(np.float32), np.ones(40, np.float32), scales[r], zps[r], -8, 7)
        assert np.array_equal(ty[r].detach().numpy(), y)
        assert np.array_equal(tx.grad[r].numpy(), grad)


# ----------------------------------------------------------------------------- calibration, sizes, FP8

def test_calibration_rejects_nan_and_bad_arguments():
    from llmref.ref.quant_calib import calibrate

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
        quant_calib.calibrate(RNG.normal(size=100), **kwargs)


def test_entropy_search_over_empty_candidate_ranges_is_defined():
    """Six samples in 2048 bins: most candidate ranges hold no sample, their Q has no mass and
    their KL is infinite (once NaN, which np.argmin would have picked)."""
    amax, scale = quant_calib.calibrate(np.array([0.5, -7.25, 3.0, 1.0, -2.0, 6.5]), "entropy")
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
    from llmref.ref.quant_calib import abs_histogram, amax_entropy, calib_samples

    x = calib_samples(np.random.default_rng(relu), 3000, relu)["x"]
    counts, edges = abs_histogram(x, 256)
    assert amax_entropy(counts, edges, 8, bool(relu), 128) == \
        _entropy_amax_as_published(counts, edges, 8, bool(relu), 128)


def test_memory_seed_table_and_bad_plans():
    from llmref.ref.quant_calib import quant_memory, seed_table_case

    data, scales, zeros, total, estimate = quant_memory(**seed_table_case(None))
    table = estimate.reshape(5, 3) / 1e9  # rows 1.5B..70B, columns 4, 8, 16 bits
    assert np.allclose(table[1], [4.2, 8.4, 16.8]) and np.allclose(table[4], [42.0, 84.0, 168.0])
    assert total[3] == 7e9 // 2 + 2 * 7e9 // 128 + 7e9 // 128 // 2  # 7B at 4 bits, exact
    with pytest.raises(InputError, match="^bits:"):
        quant_memory(np.array([128]), np.array([12]))
    with pytest.raises(InputError, match="^group_size:"):
        quant_memory(np.array([100]), np.array([4]))
    with pytest.raises(InputError, match="^zero_points:"):
        quant_memory(np.array([128]), np.array([4]), zero_points="yes")


@pytest.mark.crosscheck
@pytest.mark.parametrize("fmt,torch_name", [("e4m3", "float8_e4m3fn"), ("e5m2", "float8_e5m2")])
def test_fp8_bits_match_torch(fmt, torch_name):
    torch = pytest.importorskip("torch", reason="torch float8 casts are the cross-check")
    from llmref.ref.quant_formats import fp8_quantize

    x = np.concatenate([RNG.normal(scale=5.0, size=500), [0.0, -0.0, 1e-9]]).astype(np.float32)
    scale, bits, x_hat = fp8_quantize(x, fmt)
    theirs = (torch.from_numpy(x) / float(scale[0])).to(getattr(torch, torch_name))
    assert np.array_equal(theirs.view(torch.uint8).numpy(), bits)


# ----------------------------------------------------------------------------- the INT4 GPU kernel

def test_host_code_names_kernels_that_the_cuda_source_defines():
    """Without a GPU the kernel cannot run here: at least every name the host launches exists."""
    import re
    from pathlib import Path

    import llmref.accel.cupy.quant as host

    source = (Path(host.__file__).parent / "w4a16.cu").read_text()
    defined = set(re.findall(r"^W4A16_KERNEL\((\w+),", source, flags=re.M))
    wanted = {f"w4a16_{kind}_m{host.rows_per_pass(m)}" for kind in host._KIND.values()
              for m in range(1, 65)}
    assert wanted <= defined
    assert f"#define WARPS {host.WARPS}" in source


def test_gpu_benchmark_explains_itself_without_a_gpu():
    import subprocess
    import sys
    from pathlib import Path

    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        pytest.skip("a GPU is present: bench/w4a16.py would run the real benchmark")
    except Exception:
        pass
    script = Path(__file__).resolve().parents[1] / "bench" / "w4a16.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no CUDA GPU available" in result.stderr
