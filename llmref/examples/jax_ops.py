"""JAX (the CPU build) as shipped, adapted to llmref's specs.

@jax_adapter hands each function jax arrays and turns the arrays it returns back into NumPy.
JAX computes in float32 unless 64-bit types are enabled, so every adapter here runs inside
`jax.enable_x64(True)` (a context manager: the process-wide default is left alone), and a
float64 audit gets float64 arithmetic.

* sdpa: jax.nn.dot_product_attention takes (B, L, H, D); the spec's (B, H, L, D) is
  transposed in and out. The spec's masks are one explicit boolean mask (jax's is_causal and
  local_window_size are top-left aligned, j <= i). GQA: jax groups query head n onto KV head
  n // (Hq / Hkv), the spec's order. Convention difference: jax fills masked logits with a
  large finite negative number (functions.py _apply_masks, _get_large_negative), so a row
  whose keys are all masked gets the plain average of the values, where the spec gives 0;
  the cases with such rows are declared unsupported. jax also requires the value width to
  equal the key width (Dv == D), and carries the softmax in float32 whatever the dtype
  ("Softmax and it is always carried out in fp32"), so sdpa is declared float32 and below.
"""
import functools

import jax
import numpy as np

from llmref.adapters import jax_adapter


def x64(adapted):
    """Run an adapted function with JAX's 64-bit types on (inputs are converted inside)."""
    @functools.wraps(adapted)
    def run(**kwargs):
        with jax.enable_x64(True):
            return adapted(**kwargs)

    return run


@x64
@jax_adapter
def softmax(x, axis):
    return jax.nn.softmax(x, axis=axis)


def sdpa_mask(key_padding_mask, lq, causal, window):
    """The spec's keep mask (B, 1, Lq, Lk): key padding AND bottom-right causal (query i sits
    at position i + Lk - Lq) AND the sliding window. Built in NumPy: plumbing, not worth a
    compilation per shape."""
    key_padding_mask = np.asarray(key_padding_mask)
    lk = key_padding_mask.shape[1]
    pos = np.arange(lq)[:, None] + (lk - lq)
    j = np.arange(lk)[None, :]
    keep = key_padding_mask[:, None, None, :]
    if causal:
        keep = keep & (j <= pos)
    if window:
        keep = keep & (j > pos - window)
    return np.broadcast_to(keep, (key_padding_mask.shape[0], 1, lq, lk))


_FULLY_MASKED = ("jax.nn.dot_product_attention masks with a large finite negative logit "
                 "(jax/_src/nn/functions.py _apply_masks), so a row with every key masked "
                 "averages all values; the spec gives 0 there")
_VALUE_WIDTH = ("jax.nn.dot_product_attention requires value's head width to equal the key's "
                "('value shape should be [B, S, K, H]'); this case has Dv != D")


@x64
@jax_adapter(dtypes=["float32", "float16", "bfloat16"],
             skip={"key_padding": _FULLY_MASKED, "causal_q_longer_than_k": _FULLY_MASKED,
                   "cross_attention": _VALUE_WIDTH, "explicit_scale": _VALUE_WIDTH})
def sdpa(q, k, v, key_padding_mask, causal, window, scale):
    """Declared float32 and below: the softmax runs in float32 at float64 too."""
    mask = sdpa_mask(key_padding_mask, q.shape[2], causal, window)
    out = jax.nn.dot_product_attention(
        q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),
        mask=mask, scale=scale or None, implementation="xla")
    return out.transpose(0, 2, 1, 3)
