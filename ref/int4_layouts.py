"""One 4-bit weight in every layout llmref knows (specs/int4_layouts.yaml): the canonical
INT4 bytes (ref/_quant.py: pack_int4), GPTQ v1 and AWQ GEMM int32 words.

A 32-bit word holds eight 4-bit slots, slot i at bits [4i, 4i + 4); the layouts differ in
which code each slot holds and along which axis the words run.
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._quant import pack_int4
from llmref.validate import int_array

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # bit slot i (shift 4i) holds column 8c + AWQ_ORDER[i]


def int4_layouts_args(q, zeros):
    """Validated (q, zeros) of int4_layouts: codes 0..15, q (N, K) with N and K multiples of 8
    (32-bit packing), zeros (N, K/G) of whole groups."""
    q = int_array("q", q, ndim=2, low=0, high=16)
    zeros = int_array("zeros", zeros, ndim=2, low=0, high=16)
    n, k = q.shape
    if n == 0 or k == 0 or n % 8 or k % 8:
        raise InputError(f"q: shape {q.shape} needs N and K multiples of 8 for 32-bit packing")
    if zeros.shape[0] != n or zeros.shape[1] == 0 or k % zeros.shape[1]:
        raise InputError(f"zeros: shape {zeros.shape} does not give whole groups of K={k} per row")
    return q, zeros


def int4_layouts(q, zeros):
    """Every 4-bit layout of one quantized weight: canonical INT4 bytes, GPTQ v1 and AWQ GEMM
    tensors (see pack_int4, to_gptq, to_awq). q: (N, K) codes, zeros: (N, K/G) codes, N % 8 = 0,
    K % 8 = 0."""
    q, zeros = int4_layouts_args(q, zeros)
    gptq_qweight, gptq_qzeros = to_gptq(q, zeros)
    awq_qweight, awq_qzeros = to_awq(q, zeros)
    return {"packed": pack_int4(q), "gptq_qweight": gptq_qweight, "gptq_qzeros": gptq_qzeros,
            "awq_qweight": awq_qweight, "awq_qzeros": awq_qzeros}


def words_from_nibbles(nib):
    """(..., 8) codes -> (...,) int32 words, slot i at bits [4i, 4i+4)."""
    shifts = np.arange(8, dtype=np.uint32) * 4
    return (nib.astype(np.uint32) << shifts).sum(axis=-1, dtype=np.uint32).view(np.int32)


def nibbles_from_words(words):
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
    qweight = words_from_nibbles(q.T.reshape(k // 8, 8, n).transpose(0, 2, 1))  # (K/8, N, 8)
    stored = (zeros.astype(np.int64) - 1) & 0xF  # (N, K/G)
    qzeros = words_from_nibbles(stored.T.reshape(-1, n // 8, 8))  # (K/G, N/8, 8)
    return qweight, qzeros


def from_gptq(qweight, qzeros):
    """GPTQ v1 (qweight, qzeros) -> canonical (q (N, K), zeros (N, K/G)); zero = (stored+1) & 15."""
    k8, n = qweight.shape
    q = nibbles_from_words(qweight).transpose(0, 2, 1).reshape(k8 * 8, n).T  # (N, K)
    stored = nibbles_from_words(qzeros).reshape(qzeros.shape[0], n)  # (K/G, N)
    return np.ascontiguousarray(q), np.ascontiguousarray(((stored.astype(np.int64) + 1) & 0xF).T.astype(np.uint8))


def to_awq(q, zeros):
    """Canonical (q (N, K), zeros (N, K/G)) -> AWQ GEMM (qweight (K, N/8), qzeros (K/G, N/8)),
    packed along N with slot i holding column 8c + AWQ_ORDER[i]; zeros stored as they are."""
    order = np.array(AWQ_ORDER)
    qweight = words_from_nibbles(q.T.reshape(q.shape[1], -1, 8)[..., order])  # (K, N/8, 8)
    qzeros = words_from_nibbles(zeros.T.reshape(zeros.shape[1], -1, 8)[..., order])
    return qweight, qzeros


def from_awq(qweight, qzeros):
    """AWQ GEMM -> canonical (q (N, K), zeros (N, K/G)); undo the order with its inverse."""
    inverse = np.argsort(AWQ_ORDER)  # (0, 4, 1, 5, 2, 6, 3, 7)
    q = nibbles_from_words(qweight)[..., inverse].reshape(qweight.shape[0], -1).T
    z = nibbles_from_words(qzeros)[..., inverse].reshape(qzeros.shape[0], -1).T
    return np.ascontiguousarray(q), np.ascontiguousarray(z)


# --- case generators (specs/int4_layouts.yaml) ---

def int4_layouts_case(rng, N, K, GS):
    """Random codes, with zero-points 0 and 15 present (the GPTQ v1 wrap-around cases)."""
    zeros = rng.integers(0, 16, size=(N, K // GS)).astype(np.uint8)
    zeros.reshape(-1)[:2] = [0, 15]
    return {"q": rng.integers(0, 16, size=(N, K)).astype(np.uint8), "zeros": zeros}
