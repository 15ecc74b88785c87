"""Quantization: linear (symmetric / affine, per tensor, channel or group), binary and ternary,
QAT fake-quant with its straight-through gradient, the canonical INT4 / INT2 packing, and the
W4A16 and W8A8 matmuls, and the GPTQ / AWQ layouts (specs/quantize_linear.yaml, fake_quant.yaml,
int4_layouts.yaml, w4a16_matmul.yaml, w8a8_matmul.yaml). Block and float formats (GGUF, NF4,
FP8) are in ref/quant_formats.py; calibration and memory sizes in ref/quant_calib.py.

The float arithmetic runs in the precision of the float input; integer codes are exact.
Rounding is round-half-to-even (np.rint) unless a format says otherwise.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import axis_index, float_array, int_array

SCHEMES = ("symmetric", "affine", "binary", "ternary")
GRANULARITIES = ("tensor", "channel", "group")
TERNARY_THRESHOLD = 0.7  # TWN: delta = 0.7 * mean|x|


# ----------------------------------------------------------------------------- ranges, slices

def check_bits(bits, low=2, high=8, name="bits"):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not low <= bits <= high:
        raise InputError(f"{name}: must be an integer in [{low}, {high}], got {bits!r}")
    return int(bits)


def integer_range(bits, scheme, signed):
    """(qmin, qmax) of the integer codes.

    symmetric signed:   [-(2^(b-1) - 1), 2^(b-1) - 1]   restricted, so 0 sits in the middle
    symmetric unsigned: [1, 2^b - 1], zero-point 2^(b-1)  (the signed range shifted)
    affine signed:      [-2^(b-1), 2^(b-1) - 1];  affine unsigned: [0, 2^b - 1]
    binary: [-1, 1] (codes -1, +1);  ternary: [-1, 1]
    """
    if scheme in ("binary", "ternary"):
        return -1, 1
    half = 2 ** (bits - 1)
    if scheme == "symmetric":
        return (-(half - 1), half - 1) if signed else (1, 2 * half - 1)
    return (-half, half - 1) if signed else (0, 2 * half - 1)


def slice_layout(x, granularity, axis, group_size):
    """View x as (slices, n), every row one slice sharing a scale; return it with two functions
    restoring per-element codes (slices, n) to x.shape and per-slice values (slices,) to the
    scale shape (x.shape with reduced axes set to 1, or the grouped axis set to n_axis/g).

    tensor:  one slice;  channel: one slice per index along `axis`;
    group:   groups of `group_size` consecutive elements along `axis`, one per position of the
             other axes.
    """
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity: must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity == "tensor":
        return (x.reshape(1, -1), lambda q: q.reshape(x.shape),
                lambda s: s.reshape((1,) * x.ndim))
    axis = axis_index("axis", axis, x.ndim)
    if granularity == "channel":
        moved = np.moveaxis(x, axis, 0)  # (n_axis, ...)
        scale_shape = tuple(n if d == axis else 1 for d, n in enumerate(x.shape))
        return (moved.reshape(moved.shape[0], -1),  # (n_axis, rest)
                lambda q: np.moveaxis(q.reshape(moved.shape), 0, axis),
                lambda s: s.reshape(scale_shape))
    n = x.shape[axis]
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise InputError(f"group_size: must be a positive integer, got {group_size!r}")
    if n % group_size:
        raise InputError(f"group_size: {group_size} does not divide axis {axis} of size {n}")
    last = np.moveaxis(x, axis, -1)  # (..., n)
    return (last.reshape(-1, group_size),  # (rest * n/g, g)
            lambda q: np.moveaxis(q.reshape(last.shape), -1, axis),
            lambda s: np.moveaxis(s.reshape(*last.shape[:-1], n // group_size), -1, axis))


def scale_shape(shape, granularity, axis, group_size):
    """The shape of the scale and zero-point arrays for x of `shape` (see slice_layout)."""
    slices, _, restore_scale = slice_layout(np.empty(shape), granularity, axis, group_size)
    return restore_scale(np.empty(slices.shape[0])).shape


# ----------------------------------------------------------------------------- linear quantization

def linear_params(slices, bits, scheme, signed):
    """Per-slice (scale, zero_point), slices: (S, n).

    symmetric: scale = amax / qmax_pos, zero_point = 0 (signed) or 2^(b-1) (unsigned),
               qmax_pos = 2^(b-1) - 1, amax = max|x|
    affine:    scale = (max - min) / (qmax - qmin)   (min, max of the slice, not widened to 0)
               zero_point = clamp(qmin - round_half_even(min / scale), qmin, qmax)
    A slice with amax = 0 (symmetric) or max = min (affine) gets scale 1.
    """
    qmin, qmax = integer_range(bits, scheme, signed)
    if scheme == "symmetric":
        amax = np.abs(slices).max(axis=1)  # (S,)
        scale = amax / slices.dtype.type(2 ** (bits - 1) - 1)
        scale = np.where(amax == 0, slices.dtype.type(1), scale)
        zero = np.full(scale.shape, 0 if signed else 2 ** (bits - 1), dtype=np.int64)
        return scale, zero
    lo, hi = slices.min(axis=1), slices.max(axis=1)  # (S,)
    scale = (hi - lo) / slices.dtype.type(qmax - qmin)
    scale = np.where(hi == lo, slices.dtype.type(1), scale)
    zero = np.clip(qmin - np.rint(lo / scale).astype(np.int64), qmin, qmax)
    return scale, zero


def binary_params(slices):
    """XNOR-Net: scale = mean|x| over the slice (0 -> 1); codes sign(x) with sign(0) = +1."""
    scale = np.abs(slices).mean(axis=1)
    return np.where(scale == 0, slices.dtype.type(1), scale)


def ternary_threshold(slices):
    """TWN: delta = 0.7 * mean|x| over the slice."""
    return slices.dtype.type(TERNARY_THRESHOLD) * np.abs(slices).mean(axis=1)


def ternary_params(slices, delta):
    """TWN: scale = mean of |x| over the entries with |x| > delta (1 if there are none)."""
    big = np.abs(slices) > delta[:, None]
    count = big.sum(axis=1)
    total = np.where(big, np.abs(slices), 0).sum(axis=1)
    return np.where(count == 0, slices.dtype.type(1), total / np.maximum(count, 1).astype(slices.dtype))


def quantize_codes(slices, scale, zero, qmin, qmax):
    """q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax), per slice row."""
    return np.clip(np.rint(slices / scale[:, None]).astype(np.int64) + zero[:, None], qmin, qmax)


def quantize_linear(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0,
                    group_size=0):
    """Quantize x and dequantize it again: (q, scale, zero_point, x_hat).

    symmetric / affine:  q = clamp(round_half_even(x/S) + Z, qmin, qmax),  x_hat = (q - Z) * S
    binary:  q = +1 if x >= 0 else -1,  S = mean|x|,  x_hat = q * S
    ternary: q = sign(x) if |x| > 0.7 mean|x| else 0,  S = mean|x| over |x| > delta
    S and Z have the shape of x with reduced axes kept as 1 (tensor, channel) or the grouped
    axis divided by group_size (group). Dequantize with `dequantize_linear`.
    """
    if scheme not in SCHEMES:
        raise InputError(f"scheme: must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "binary":
        bits = check_bits(bits, 1, 1)
    elif scheme == "ternary":
        bits = check_bits(bits, 2, 2)
    else:
        bits = check_bits(bits)
    x = float_array("x", x, min_ndim=1)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    qmin, qmax = integer_range(bits, scheme, signed)
    if scheme == "binary":
        scale = binary_params(slices)
        zero = np.zeros(scale.shape, np.int64)
        q = np.where(slices >= 0, 1, -1)
    elif scheme == "ternary":
        delta = ternary_threshold(slices)
        scale = ternary_params(slices, delta)
        zero = np.zeros(scale.shape, np.int64)
        q = np.where(slices > delta[:, None], 1, np.where(slices < -delta[:, None], -1, 0))
    else:
        scale, zero = linear_params(slices, bits, scheme, signed)
        q = quantize_codes(slices, scale, zero, qmin, qmax)
    q = restore_codes(q).astype(np.int32)
    scale = restore_scale(scale).astype(x.dtype)
    zero = restore_scale(zero).astype(np.int32)
    return q, scale, zero, dequantize_linear(q, scale, zero, granularity, axis, group_size)


def expand_params(p, shape, granularity, axis, group_size):
    """Broadcast a scale / zero-point array of the layout above to the full shape."""
    if granularity != "group":
        return p
    axis = axis % len(shape)
    return np.repeat(p, group_size, axis=axis)  # (..., n_axis/g, ...) -> (..., n_axis, ...)


def dequantize_linear(q, scale, zero_point, granularity="tensor", axis=0, group_size=0):
    """x_hat = (q - zero_point) * scale, in the dtype of scale."""
    q = int_array("q", q)
    scale = float_array("scale", scale, ndim=q.ndim)
    zero_point = int_array("zero_point", zero_point, ndim=q.ndim)
    expected = scale_shape(q.shape, granularity, axis, group_size)
    for name, arr in (("scale", scale), ("zero_point", zero_point)):
        if arr.shape != expected:
            raise InputError(f"{name}: has shape {arr.shape}, expected {expected} for "
                             f"{granularity} quantization of shape {q.shape}")
    s = expand_params(scale, q.shape, granularity, axis, group_size)
    z = expand_params(zero_point, q.shape, granularity, axis, group_size)
    return ((q.astype(np.int64) - z).astype(scale.dtype) * s).astype(scale.dtype)


# ----------------------------------------------------------------------------- QAT fake-quant

def fake_quant(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """Fake-quantize x and back-propagate grad_y through it: (y, grad_x).

    y      = (clamp(round_half_even(x/scale) + zero_point, quant_min, quant_max) - zero_point) * scale
    grad_x = grad_y * 1[quant_min <= round_half_even(x/scale) + zero_point <= quant_max]
    The straight-through estimator passes the gradient unchanged where the rounded code lies
    inside the range and blocks it where the clamp is active (torch.fake_quantize_per_tensor_affine).
    """
    x = float_array("x", x)
    grad_y = float_array("grad_y", grad_y)
    if grad_y.shape != x.shape:
        raise InputError(f"grad_y: has shape {grad_y.shape}, expected the shape of x {x.shape}")
    if not quant_min < quant_max:
        raise InputError(f"quant_max: must exceed quant_min, got [{quant_min}, {quant_max}]")
    if not quant_min <= zero_point <= quant_max:
        raise InputError(f"zero_point: {zero_point} is outside [{quant_min}, {quant_max}]")
    s = x.dtype.type(scale)
    code = np.rint(x / s) + x.dtype.type(zero_point)  # unclamped code, float
    inside = (code >= quant_min) & (code <= quant_max)
    y = (np.clip(code, quant_min, quant_max) - x.dtype.type(zero_point)) * s
    return y.astype(x.dtype), np.where(inside, grad_y, 0).astype(x.dtype)


# ----------------------------------------------------------------------------- packing

def pack_int4(q):
    """Canonical INT4 packing, two codes per byte along the last axis, low nibble first:
    byte[..., j] = q[..., 2j] | q[..., 2j+1] << 4.   q: (..., K) in [0, 16), K even -> (..., K/2)."""
    q = int_array("q", q, min_ndim=1, low=0, high=16)
    if q.shape[-1] % 2:
        raise InputError(f"q: last axis has odd length {q.shape[-1]}; INT4 packs pairs")
    pairs = q.astype(np.uint8).reshape(*q.shape[:-1], -1, 2)  # (..., K/2, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack_int4(packed, k):
    """Inverse of pack_int4: (..., K/2) uint8 -> (..., K) codes in [0, 16)."""
    packed = int_array("packed", packed, min_ndim=1)
    if packed.dtype != np.uint8 or 2 * packed.shape[-1] != k:
        raise InputError(f"packed: expected uint8 with last axis {k // 2} for K={k}, "
                         f"got {packed.dtype} {packed.shape}")
    low, high = packed & 0x0F, packed >> 4
    return np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], k)  # (..., K/2, 2) -> (..., K)


def pack_int2(q):
    """Canonical INT2 packing, four codes per byte, lowest bits first:
    byte[..., j] = q[4j] | q[4j+1] << 2 | q[4j+2] << 4 | q[4j+3] << 6."""
    q = int_array("q", q, min_ndim=1, low=0, high=4)
    if q.shape[-1] % 4:
        raise InputError(f"q: last axis length {q.shape[-1]} is not a multiple of 4")
    quads = q.astype(np.uint8).reshape(*q.shape[:-1], -1, 4)  # (..., K/4, 4)
    return quads[..., 0] | quads[..., 1] << 2 | quads[..., 2] << 4 | quads[..., 3] << 6


def unpack_int2(packed, k):
    """Inverse of pack_int2: (..., K/4) uint8 -> (..., K) codes in [0, 4)."""
    packed = int_array("packed", packed, min_ndim=1)
    if packed.dtype != np.uint8 or 4 * packed.shape[-1] != k:
        raise InputError(f"packed: expected uint8 with last axis {k // 4} for K={k}, "
                         f"got {packed.dtype} {packed.shape}")
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    return ((packed[..., None] >> shifts) & 3).reshape(*packed.shape[:-1], k)


# ----------------------------------------------------------------------------- GPTQ / AWQ layouts

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # bit slot i (shift 4i) holds column 8c + AWQ_ORDER[i]


def _words_from_nibbles(nib):
    """(..., 8) codes -> (...,) int32 words, slot i at bits [4i, 4i+4)."""
    shifts = np.arange(8, dtype=np.uint32) * 4
    return (nib.astype(np.uint32) << shifts).sum(axis=-1, dtype=np.uint32).view(np.int32)


def _nibbles_from_words(words):
    """(...,) int32 words -> (..., 8) codes, slot i from bits [4i, 4i+4)."""
    shifts = np.arange(8, dtype=np.uint32) * 4
    return ((words.view(np.uint32)[..., None] >> shifts) & 0xF).astype(np.uint8)


def to_gptq(q, zeros):
    """Canonical (q (N, K), zeros (N, K/G), both codes 0..15) -> GPTQ v1 (qweight, qzeros).

    qweight: int32 (K/8, N), packed along K, word r holds q[n, 8r + i] at bits 4i.
    qzeros:  int32 (K/G, N/8), packed along N, storing (zero - 1) & 15: the v1 quirk. Readers
             add 1 back, so a zero of 0 is stored as 15 and read as (15 + 1) & 15 = 0.
    """
    n, k = q.shape
    qweight = _words_from_nibbles(q.T.reshape(k // 8, 8, n).transpose(0, 2, 1))  # (K/8, N, 8)
    stored = (zeros.astype(np.int64) - 1) & 0xF  # (N, K/G)
    qzeros = _words_from_nibbles(stored.T.reshape(-1, n // 8, 8))  # (K/G, N/8, 8)
    return qweight, qzeros


def from_gptq(qweight, qzeros):
    """GPTQ v1 (qweight, qzeros) -> canonical (q (N, K), zeros (N, K/G)); zero = (stored+1) & 15."""
    k8, n = qweight.shape
    q = _nibbles_from_words(qweight).transpose(0, 2, 1).reshape(k8 * 8, n).T  # (N, K)
    stored = _nibbles_from_words(qzeros).reshape(qzeros.shape[0], n)  # (K/G, N)
    return np.ascontiguousarray(q), np.ascontiguousarray(((stored.astype(np.int64) + 1) & 0xF).T.astype(np.uint8))


def to_awq(q, zeros):
    """Canonical (q (N, K), zeros (N, K/G)) -> AWQ GEMM (qweight (K, N/8), qzeros (K/G, N/8)),
    packed along N with slot i holding column 8c + AWQ_ORDER[i]; zeros stored as they are."""
    order = np.array(AWQ_ORDER)
    qweight = _words_from_nibbles(q.T.reshape(q.shape[1], -1, 8)[..., order])  # (K, N/8, 8)
    qzeros = _words_from_nibbles(zeros.T.reshape(zeros.shape[1], -1, 8)[..., order])
    return qweight, qzeros


def from_awq(qweight, qzeros):
    """AWQ GEMM -> canonical (q (N, K), zeros (N, K/G)); undo the order with its inverse."""
    inverse = np.argsort(AWQ_ORDER)  # (0, 4, 1, 5, 2, 6, 3, 7)
    q = _nibbles_from_words(qweight)[..., inverse].reshape(qweight.shape[0], -1).T
    z = _nibbles_from_words(qzeros)[..., inverse].reshape(qzeros.shape[0], -1).T
    return np.ascontiguousarray(q), np.ascontiguousarray(z)


# ----------------------------------------------------------------------------- matmuls

def check_w4_operands(x, w_packed, scales, zeros, group_size):
    """Validate W4A16 operands; return (M, K, N, groups)."""
    x = float_array("x", x, ndim=2)
    m, k = x.shape
    w_packed = int_array("w_packed", w_packed, ndim=2)
    if w_packed.dtype != np.uint8:
        raise InputError(f"w_packed: expected uint8 bytes, got {w_packed.dtype}")
    if 2 * w_packed.shape[1] != k:
        raise InputError(f"w_packed: has {w_packed.shape[1]} bytes per row; K={k} needs {k // 2}")
    n = w_packed.shape[0]
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 2:
        raise InputError(f"group_size: must be an even integer >= 2, got {group_size!r}")
    if k % group_size:
        raise InputError(f"group_size: {group_size} does not divide K={k}")
    groups = k // group_size
    scales = float_array("scales", scales, ndim=2)
    if scales.shape != (n, groups):
        raise InputError(f"scales: has shape {scales.shape}, expected (N, K/group_size) = {(n, groups)}")
    zeros = int_array("zeros", zeros, ndim=2, low=0, high=16)
    if zeros.shape != (n, groups):
        raise InputError(f"zeros: has shape {zeros.shape}, expected (N, K/group_size) = {(n, groups)}")
    return m, k, n, groups


def dequantize_w4(w_packed, scales, zeros, group_size):
    """W[n, k] = (q[n, k] - zeros[n, k // G]) * scales[n, k // G], q unpacked canonically."""
    k = 2 * w_packed.shape[1]
    q = unpack_int4(w_packed, k).astype(np.int64)  # (N, K)
    z = np.repeat(zeros.astype(np.int64), group_size, axis=1)  # (N, K)
    s = np.repeat(scales, group_size, axis=1)  # (N, K)
    return (q - z) * s


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    """y = x @ W^T with W dequantized from canonical packed INT4 (see dequantize_w4).

    x: (M, K) activations; w_packed: (N, K/2) uint8; scales: (N, K/G); zeros: (N, K/G) codes
    0..15. Products and sums are exact in float64 here; implementations accumulate in float32
    and round y once to the activation dtype.
    """
    check_w4_operands(x, w_packed, scales, zeros, group_size)
    x = np.asarray(x)
    x64 = x.astype(np.float64)
    w = dequantize_w4(np.asarray(w_packed), np.asarray(scales, np.float64), np.asarray(zeros), group_size)
    return (x64 @ w.T).astype(x.dtype)


def w8a8_matmul(x_q, w_q, x_scale, w_scale):
    """y = (sum_k x_q[m, k] * w_q[n, k]) * x_scale[m] * w_scale[n]: int8 x int8 with exact
    int32 accumulation (|acc| <= K * 128^2 < 2^31 for K < 2^17), then one float rescale.

    x_q: (M, K) int8 per-token codes; w_q: (N, K) int8 per-channel codes;
    x_scale: (M,); w_scale: (N,). Returns (acc int32 (M, N), y float (M, N)).
    """
    x_q, w_q, x_scale, w_scale = w8a8_args(x_q, w_q, x_scale, w_scale)
    acc = x_q.astype(np.int64) @ w_q.astype(np.int64).T  # (M, N), exact
    y = acc.astype(x_scale.dtype) * x_scale[:, None] * w_scale[None, :]
    return acc.astype(np.int32), y.astype(x_scale.dtype)


def w8a8_args(x_q, w_q, x_scale, w_scale):
    """Validated (x_q, w_q, x_scale, w_scale) of w8a8_matmul; every backend checks through this."""
    x_q = int_array("x_q", x_q, ndim=2, low=-128, high=128)
    w_q = int_array("w_q", w_q, ndim=2, low=-128, high=128)
    if w_q.shape[1] != x_q.shape[1]:
        raise InputError(f"w_q: has K={w_q.shape[1]}, x_q has K={x_q.shape[1]}")
    if x_q.shape[1] >= 2 ** 17:
        raise InputError(f"x_q: K={x_q.shape[1]} could overflow the int32 accumulator")
    x_scale = float_array("x_scale", x_scale, ndim=1)
    w_scale = float_array("w_scale", w_scale, ndim=1)
    if x_scale.shape[0] != x_q.shape[0]:
        raise InputError(f"x_scale: has {x_scale.shape[0]} entries, expected M={x_q.shape[0]}")
    if w_scale.shape[0] != w_q.shape[0]:
        raise InputError(f"w_scale: has {w_scale.shape[0]} entries, expected N={w_q.shape[0]}")
    return x_q, w_q, x_scale, w_scale


# ----------------------------------------------------------------------------- case generators

def w4a16_case(rng, M, K, N, GS):
    """Random W4A16 operands: codes and zero-points uniform in 0..15, scales ~ 0.01 (fp16-sized)."""
    groups = K // GS
    q = rng.integers(0, 16, size=(N, K))
    return {"x": rng.normal(size=(M, K)),
            "w_packed": pack_int4(q),
            "scales": rng.uniform(0.005, 0.02, size=(N, groups)),
            "zeros": rng.integers(0, 16, size=(N, groups)).astype(np.uint8)}


def w8a8_case(rng, M, K, N, LOW=-128, HIGH=128):
    """Random int8 codes in [LOW, HIGH) with per-token and per-channel scales."""
    return {"x_q": rng.integers(LOW, HIGH, size=(M, K)).astype(np.int8),
            "w_q": rng.integers(LOW, HIGH, size=(N, K)).astype(np.int8),
            "x_scale": rng.uniform(0.001, 0.05, size=M),
            "w_scale": rng.uniform(0.001, 0.05, size=N)}


def int4_layouts(q, zeros):
    """Every 4-bit layout of one quantized weight: canonical INT4 bytes, GPTQ v1 and AWQ GEMM
    tensors (see pack_int4, to_gptq, to_awq). q: (N, K) codes, zeros: (N, K/G) codes, N % 8 = 0,
    K % 8 = 0."""
    q = int_array("q", q, ndim=2, low=0, high=16)
    zeros = int_array("zeros", zeros, ndim=2, low=0, high=16)
    n, k = q.shape
    if n % 8 or k % 8:
        raise InputError(f"q: shape {q.shape} needs N and K multiples of 8 for 32-bit packing")
    if zeros.shape[0] != n or zeros.shape[1] == 0 or k % zeros.shape[1]:
        raise InputError(f"zeros: shape {zeros.shape} does not give whole groups of K={k} per row")
    gptq_qweight, gptq_qzeros = to_gptq(q, zeros)
    awq_qweight, awq_qzeros = to_awq(q, zeros)
    return {"packed": pack_int4(q), "gptq_qweight": gptq_qweight, "gptq_qzeros": gptq_qzeros,
            "awq_qweight": awq_qweight, "awq_qzeros": awq_qzeros}


def int4_layouts_case(rng, N, K, GS):
    """Random codes, with zero-points 0 and 15 present (the GPTQ v1 wrap-around cases)."""
    zeros = rng.integers(0, 16, size=(N, K // GS)).astype(np.uint8)
    zeros.reshape(-1)[:2] = [0, 15]
    return {"q": rng.integers(0, 16, size=(N, K)).astype(np.uint8), "zeros": zeros}
