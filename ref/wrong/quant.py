"""Wrong quantization variants seen in the wild; each must fail its audit."""
import numpy as np

from llmref.dtypes import round_to
from llmref.ref import quant, quant_formats
from llmref.ref.quant import dequantize_linear, integer_range, slice_layout


def _linear(x, bits, scheme, signed, granularity, axis, group_size, params, rounding=np.rint,
            qrange=None):
    """quantize_linear with its qparams, rounding or range swapped by the caller (symmetric and
    affine; binary and ternary, which round nothing, are the reference's)."""
    if scheme in ("binary", "ternary"):
        return quant.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    x = np.asarray(x)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    qmin, qmax = qrange or integer_range(bits, scheme, signed)
    scale, zero = params(slices, bits, scheme, signed)
    q = np.clip(rounding(slices / scale[:, None]).astype(np.int64) + zero[:, None], qmin, qmax)
    q = restore_codes(q).astype(np.int32)
    scale = restore_scale(scale).astype(x.dtype)
    zero = restore_scale(zero).astype(np.int32)
    return q, scale, zero, dequantize_linear(q, scale, zero, granularity, axis, group_size)


def _roundf(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_round_half_away(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                             axis=0, group_size=0):
    """C roundf (half away from zero) for x / S and for the zero-point."""
    def params(slices, bits, scheme, signed):
        scale, zero = quant.linear_params(slices, bits, scheme, signed)
        if scheme == "affine":
            qmin, qmax = integer_range(bits, scheme, signed)
            zero = np.clip(qmin - _roundf(slices.min(axis=1) / scale).astype(np.int64), qmin, qmax)
        return scale, zero
    return _linear(x, bits, scheme, signed, granularity, axis, group_size, params, _roundf)


def quantize_zero_point_before_rounding(x, bits=8, scheme="symmetric", signed=True,
                                        granularity="tensor", axis=0, group_size=0):
    """q = clamp(round_half_even(x / S + Z)): Z added before rounding (torch.quantize_per_tensor's
    fbgemm kernel), which moves exact ties to the other neighbour when Z is odd."""
    if scheme in ("binary", "ternary"):
        return quant.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    x = np.asarray(x)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    qmin, qmax = integer_range(bits, scheme, signed)
    scale, zero = quant.linear_params(slices, bits, scheme, signed)
    shifted = slices / scale[:, None] + zero[:, None].astype(x.dtype)
    q = np.clip(np.rint(shifted).astype(np.int64), qmin, qmax)
    q = restore_codes(q).astype(np.int32)
    scale = restore_scale(scale).astype(x.dtype)
    zero = restore_scale(zero).astype(np.int32)
    return q, scale, zero, dequantize_linear(q, scale, zero, granularity, axis, group_size)


def quantize_zero_point_unclamped(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                                  axis=0, group_size=0):
    """Z = qmin - round(min / S) used as is, even outside [qmin, qmax]."""
    def params(slices, bits, scheme, signed):
        scale, zero = quant.linear_params(slices, bits, scheme, signed)
        if scheme == "affine":
            qmin, _ = integer_range(bits, scheme, signed)
            zero = qmin - np.rint(slices.min(axis=1) / scale).astype(np.int64)
        return scale, zero
    return _linear(x, bits, scheme, signed, granularity, axis, group_size, params)


def quantize_full_signed_range(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                               axis=0, group_size=0):
    """Symmetric over [-2^(b-1), 2^(b-1)-1] with S = absmax / (2^(b-1) - 0.5) (PyTorch qint8)."""
    def params(slices, bits, scheme, signed):
        scale, zero = quant.linear_params(slices, bits, scheme, signed)
        if scheme == "symmetric":
            amax = np.abs(slices).max(axis=1)
            scale = np.where(amax == 0, 1.0, amax / (2 ** (bits - 1) - 0.5))
        return scale, zero
    qrange = (-2 ** (bits - 1), 2 ** (bits - 1) - 1) if scheme == "symmetric" and signed else None
    return _linear(x, bits, scheme, signed, granularity, axis, group_size, params, qrange=qrange)


def quantize_ternary_inclusive(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                               axis=0, group_size=0):
    """Ternary codes where |x| >= delta (the threshold itself kept) instead of |x| > delta."""
    if scheme != "ternary":
        return quant.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    x = np.asarray(x)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    delta = quant.ternary_threshold(slices)
    big = np.abs(slices) >= delta[:, None]
    q = np.where(big, np.where(slices < 0, -1, 1), 0)
    count = big.sum(axis=1)
    scale = np.where(count == 0, 1.0, np.where(big, np.abs(slices), 0).sum(axis=1) / np.maximum(count, 1))
    q = restore_codes(q).astype(np.int32)
    scale = restore_scale(scale).astype(x.dtype)
    zero = np.zeros(scale.shape, np.int32)
    return q, scale, zero, dequantize_linear(q, scale, zero, granularity, axis, group_size)


def quantize_channel_axis_ignored(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                                  axis=0, group_size=0):
    """Per-channel scales always per row (axis 0)."""
    if granularity == "channel":
        axis = 0
    return quant.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)


def fake_quant_round_half_away(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """C roundf (half away from zero) for x / S: 0.5 -> 1, -2.5 -> -3, 127.5 -> 128."""
    x, grad_y = np.asarray(x), np.asarray(grad_y)
    s = x.dtype.type(scale)
    code = _roundf(x / s) + x.dtype.type(zero_point)
    inside = (code >= quant_min) & (code <= quant_max)
    y = (np.clip(code, quant_min, quant_max) - x.dtype.type(zero_point)) * s
    return y.astype(x.dtype), np.where(inside, grad_y, 0).astype(x.dtype)


def fake_quant_unmasked_ste(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """The straight-through gradient passed everywhere, also where the clamp is active."""
    y, _ = quant.fake_quant(x, grad_y, scale, zero_point, quant_min, quant_max)
    return y, np.asarray(grad_y).copy()


def fake_quant_mask_on_unrounded(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """The mask tested on x/S + Z before rounding: 127.4 -> grad 0 although it rounds to 127."""
    y, _ = quant.fake_quant(x, grad_y, scale, zero_point, quant_min, quant_max)
    code = x / scale + zero_point
    return y, np.where((code >= quant_min) & (code <= quant_max), grad_y, 0).astype(x.dtype)


def gguf_q4_0_adjacent_pairs(x, fmt="Q4_0"):
    """Q4_0 nibbles paired as elements j, j+1 (qs[j] = q[2j] | q[2j+1] << 4) instead of j, j+16."""
    blocks, x_hat = quant_formats.gguf_quantize(x, fmt)
    if fmt != "Q4_0":
        return blocks, x_hat
    q = quant_formats.unpack_ggml_nibbles(blocks[:, 2:])  # (B, 32) in element order
    pairs = q.reshape(len(q), 16, 2)
    blocks = blocks.copy()
    blocks[:, 2:] = pairs[..., 0] | (pairs[..., 1] << 4)
    return blocks, _adjacent_dequantize(blocks).astype(np.asarray(x).dtype)


def _adjacent_dequantize(blocks):
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
    qs = blocks[:, 2:]
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(len(qs), 32).astype(np.float32)
    return ((q - 8) * d).reshape(-1)


def _gguf_with(x, fmt, codes):
    """gguf_quantize with the codes of the float32 blocks computed by `codes(blocks, d, m, id)`."""
    x = np.asarray(x)
    blocks = round_to(x, "float32").reshape(-1, 32)
    d, m, _, _, _ = quant_formats.gguf_decisions(blocks, fmt)
    q = codes(blocks, d, m, quant_formats.reciprocal(d)[:, None])
    packed = quant_formats.pack_gguf(fmt, d, m, q)
    return packed, quant_formats.dequantize_gguf(packed, fmt).astype(x.dtype)


def gguf_round_half_even(x, fmt="Q4_0"):
    """Q8_0 with np.rint (half to even) where ggml uses roundf (half away from zero)."""
    if fmt != "Q8_0":
        return quant_formats.gguf_quantize(x, fmt)
    return _gguf_with(x, fmt, lambda b, d, m, inv: np.rint(b * inv).astype(np.int64))


def gguf_q4_round_half_away(x, fmt="Q4_0"):
    """Q4_0 as clamp(roundf(x * id) + 8, 0, 15): half away from zero, where ggml's truncation of
    x * id + 8.5 rounds ties up."""
    if fmt != "Q4_0":
        return quant_formats.gguf_quantize(x, fmt)
    return _gguf_with(x, fmt, lambda b, d, m, inv: np.clip(
        quant_formats.roundf(b * inv).astype(np.int64) + 8, 0, 15))


def gguf_q4_round_half_even(x, fmt="Q4_0"):
    """Q4_0 / Q4_1 codes by np.rint: clamp(rint(x * id) + 8) and clamp(rint((x - min) * id))."""
    if fmt == "Q4_0":
        return _gguf_with(x, fmt, lambda b, d, m, inv: np.clip(np.rint(b * inv).astype(np.int64) + 8, 0, 15))
    if fmt == "Q4_1":
        return _gguf_with(x, fmt, lambda b, d, m, inv: np.clip(
            np.rint((b - m[:, None]) * inv).astype(np.int64), 0, 15))
    return quant_formats.gguf_quantize(x, fmt)


def nf4_perturbed_codebook(x, block_size=64):
    """NF4 with one codebook entry (index 13, 0.5626...) off by 0.01."""
    saved = quant_formats.NF4_CODEBOOK.copy()
    try:
        quant_formats.NF4_CODEBOOK[13] += 0.01
        return quant_formats.nf4_quantize(x, block_size)
    finally:
        quant_formats.NF4_CODEBOOK[:] = saved


def nf4_ties_to_upper(x, block_size=64):
    """NF4 with exact midpoints sent to the upper code: the nearest code by argmin over the
    codebook reversed (the last minimum in index order)."""
    x = np.asarray(x)
    blocks = x.reshape(-1, block_size)
    absmax = np.abs(blocks).max(axis=1)
    scaled = blocks / np.where(absmax == 0, x.dtype.type(1), absmax)[:, None]
    book = quant_formats.NF4_CODEBOOK.astype(x.dtype)
    codes = 15 - np.abs(scaled[..., None] - book[::-1]).argmin(axis=-1)
    x_hat = (book[codes] * absmax[:, None]).reshape(-1)
    return quant_formats.pack_nf4(codes), absmax, x_hat.astype(x.dtype)


def nf4_low_nibble_first(x, block_size=64):
    """NF4 packed with the first element in the low nibble (GGML's order, not bitsandbytes')."""
    packed, absmax, x_hat = quant_formats.nf4_quantize(x, block_size)
    return ((packed << 4) | (packed >> 4)).astype(np.uint8), absmax, x_hat


def w4a16_nibbles_swapped(x, w_packed, scales, zeros, group_size=128):
    """Unpacks the high nibble as the even element."""
    swapped = ((w_packed << 4) | (w_packed >> 4)).astype(np.uint8)
    return quant.w4a16_matmul(x, swapped, scales, zeros, group_size)


def w4a16_zero_point_fixed_at_8(x, w_packed, scales, zeros, group_size=128):
    """Assumes symmetric GPTQ weights: every zero-point taken as 8, the stored ones ignored."""
    return quant.w4a16_matmul(x, w_packed, scales, np.full_like(zeros, 8), group_size)


def w8a8_int16_accumulator(x_q, w_q, x_scale, w_scale):
    """The int8 x int8 products summed in an int16 accumulator, which wraps."""
    wrapped = np.zeros((x_q.shape[0], w_q.shape[0]), np.int16)
    for k in range(x_q.shape[1]):
        prod = x_q[:, k:k + 1].astype(np.int16) * w_q[:, k].astype(np.int16)[None, :]
        wrapped = (wrapped.astype(np.int32) + prod).astype(np.int16)  # wraps modulo 2^16
    y = wrapped.astype(x_scale.dtype) * x_scale[:, None] * w_scale[None, :]
    return wrapped.astype(np.int32), y


def calibrate_signed_max(x, method="minmax", num_bits=8, unsigned=False, num_bins=2048,
                         percentile=99.99, start_bin=128):
    """amax = max x: a large negative sample is ignored."""
    from llmref.ref import quant_calib

    if method != "minmax":
        return quant_calib.calibrate(x, method, num_bits, unsigned, num_bins, percentile, start_bin)
    bound = 2 ** (num_bits - 1 + int(unsigned)) - 1
    amax = np.asarray(x, np.float64).max()
    return np.array([amax]), np.array([amax / bound])


def calibrate_zero_bin_kept(x, method="minmax", num_bits=8, unsigned=False, num_bins=2048,
                            percentile=99.99, start_bin=128):
    """The KL search on the raw histogram: counts[0] (exact zeros) is not replaced by counts[1]."""
    from llmref.ref import quant_calib

    if method != "entropy":
        return quant_calib.calibrate(x, method, num_bits, unsigned, num_bins, percentile, start_bin)
    bins, edges = quant_calib.abs_histogram(np.asarray(x, np.float64), num_bins)
    nbins = 1 << (num_bits - 1 + int(unsigned))
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        slot = np.digitize(np.arange(i), np.linspace(0, i, num=nbins + 1)) - 1
        nonzero = bins[:i] != 0
        totals = np.bincount(slot[nonzero], weights=bins[:i][nonzero], minlength=nbins)
        mean = totals / np.maximum(np.bincount(slot[nonzero], minlength=nbins), 1)
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        divergences.append(quant_calib.kl_divergence(p, np.where(nonzero, mean[slot], 0.0)))
    amax = edges[start_bin + len(divergences) - 1 - int(np.argmin(np.array(divergences)[::-1]))]
    bound = 2 ** (num_bits - 1 + int(unsigned)) - 1
    return np.array([amax]), np.array([amax / bound])


def calibrate_percentile_next_edge(x, method="minmax", num_bits=8, unsigned=False, num_bins=2048,
                                   percentile=99.99, start_bin=128):
    """The percentile's bin upper edge: edges[i + 1]."""
    from llmref.ref import quant_calib

    if method != "percentile":
        return quant_calib.calibrate(x, method, num_bits, unsigned, num_bins, percentile, start_bin)
    counts, edges = quant_calib.abs_histogram(np.asarray(x, np.float64), num_bins)
    cdf = np.cumsum(counts / counts.sum())
    amax = edges[min(np.searchsorted(cdf, percentile / 100) + 1, num_bins)]
    bound = 2 ** (num_bits - 1 + int(unsigned)) - 1
    return np.array([amax]), np.array([amax / bound])


def memory_without_scales(numel, bits, group_size=128, zero_points=True):
    """total = packed codes only."""
    from llmref.ref import quant_calib

    data, scales, zeros, _, estimate = quant_calib.quant_memory(numel, bits, group_size, zero_points)
    return data, scales, zeros, data, estimate


def memory_unpacked_zeros(numel, bits, group_size=128, zero_points=True):
    """One byte per zero-point."""
    from llmref.ref import quant_calib

    data, scales, _, _, estimate = quant_calib.quant_memory(numel, bits, group_size, zero_points)
    groups = np.asarray(numel, np.int64) // group_size
    zeros = np.where((np.asarray(bits) != 16) & zero_points, groups, 0)
    return data, scales, zeros, data + scales + zeros, estimate


def _fp8_scaled(x, fmt, fmax, rounding):
    """fp8_quantize with the FP8 max `fmax` and the rounding `rounding(v) -> bits` swapped."""
    x = np.asarray(x)
    amax = np.abs(x).max()
    scale = amax / x.dtype.type(fmax) if amax > 0 else x.dtype.type(1)
    bits = rounding((x / scale).astype(np.float64))
    x_hat = quant_formats.fp8_value(bits, fmt).astype(x.dtype) * scale
    return np.array([scale], dtype=x.dtype), bits, x_hat.astype(x.dtype)


def fp8_unscaled(x, fmt="e4m3"):
    """x cast to FP8 with scale 1, saturating out-of-range values at +-F."""
    x = np.asarray(x)
    fmax = quant_formats.fp8_max(fmt)
    bits = quant_formats.fp8_round(np.clip(x.astype(np.float64), -fmax, fmax), fmt)
    return np.array([1.0], dtype=x.dtype), bits, quant_formats.fp8_value(bits, fmt).astype(x.dtype)


def fp8_fnuz_max(x, fmt="e4m3"):
    """e4m3 scaled to 240 (e4m3fnuz's max) instead of 448."""
    fmax = 240.0 if fmt == "e4m3" else quant_formats.fp8_max(fmt)
    return _fp8_scaled(x, fmt, fmax, lambda v: quant_formats.fp8_round(v, fmt))


def fp8_round_half_away(x, fmt="e4m3"):
    """Midpoints between two FP8 values rounded away from zero."""
    def rounding(v):
        bits = quant_formats.fp8_round(v, fmt)
        value = quant_formats.fp8_value(bits, fmt)
        toward_zero = np.abs(value) < np.abs(v)  # v sits above |value|: the upper neighbour
        upper = quant_formats.fp8_round(np.nextafter(v, np.copysign(np.inf, v)), fmt)
        mid = (quant_formats.fp8_value(upper, fmt) + value) / 2
        return np.where(toward_zero & (v == mid), upper, bits).astype(np.uint8)
    return _fp8_scaled(x, fmt, quant_formats.fp8_max(fmt), rounding)


def fp8_through_float32(x, fmt="e4m3"):
    """float64 -> float32 -> FP8: two roundings."""
    return _fp8_scaled(x, fmt, quant_formats.fp8_max(fmt),
                       lambda v: quant_formats.fp8_round(round_to(v, "float32").astype(np.float64), fmt))


def fp8_through_float16(x, fmt="e4m3"):
    """-> float16 -> FP8: two roundings (x.half().to(torch.float8_e4m3fn))."""
    return _fp8_scaled(x, fmt, quant_formats.fp8_max(fmt),
                       lambda v: quant_formats.fp8_round(round_to(v, "float16").astype(np.float64), fmt))


def layouts_gptq_true_zeros(q, zeros):
    """qzeros holding the zero itself (gptq_v2), not zero - 1."""
    out = quant.int4_layouts(q, zeros)
    _, out["gptq_qzeros"] = quant.to_gptq(q, (zeros.astype(np.int64) + 1) & 0xF)
    return out


def layouts_awq_sequential(q, zeros):
    """AWQ slots in sequential column order 0..7."""
    out = quant.int4_layouts(q, zeros)
    out["awq_qweight"] = quant._words_from_nibbles(q.T.reshape(q.shape[1], -1, 8))
    out["awq_qzeros"] = quant._words_from_nibbles(zeros.T.reshape(zeros.shape[1], -1, 8))
    return out


def layouts_high_nibble_first(q, zeros):
    """packed[n, j] = q[n, 2j] << 4 | q[n, 2j+1]."""
    out = quant.int4_layouts(q, zeros)
    out["packed"] = ((out["packed"] << 4) | (out["packed"] >> 4)).astype(np.uint8)
    return out
