"""Absolute position encodings: sinusoidal and learned (specs/sinusoidal_positions.yaml,
learned_positions.yaml). Rotary embeddings are llmref.ref.rope.

Precision: the sinusoidal table is computed in float64; an evaluation at float32 is granted
the error a float32 angle carries (sinusoidal_positions_bound, derived as rope_bound is).
"""
import numpy as np

from llmref.ref.rope import (LIBM_ERROR, RopeScaling, angle_roundoff, even_width,
                             inverse_frequencies, rope_inv_freq_error)
from llmref.validate import float_array, int_array, positive


def sinusoidal_positions(positions, dim=16, base=10000.0):
    """PE[p, 2i] = sin(p / base^(2i/dim)),  PE[p, 2i+1] = cos(p / base^(2i/dim))   (float64).

    Sine and cosine of the same frequency are interleaved, as in the paper (Vaswani et al.,
    sec. 3.5); tensor2tensor instead concatenates all sines then all cosines.
    """
    positions = sinusoidal_positions_args(positions, dim, base)
    inv_freq, _ = inverse_frequencies(dim, 0, RopeScaling(base=base))  # (dim/2,): base^(-2i/dim)
    angle = positions.astype(np.float64)[..., None] * inv_freq  # (..., dim/2)
    pe = np.stack([np.sin(angle), np.cos(angle)], axis=-1)  # (..., dim/2, 2)
    return pe.reshape(*positions.shape, dim)  # (..., dim): sin, cos, sin, cos, ...


def sinusoidal_positions_args(positions, dim, base):
    """Validated integer positions >= 0; dim a positive even integer, base > 0."""
    positions = int_array("positions", positions, low=0)
    even_width("dim", dim)
    positive("base", base)
    return positions


def learned_positions(table, positions):
    """out[..., :] = table[positions[...], :]: a learned absolute position embedding is a
    row lookup (GPT-2's wpe); a position outside [0, len(table)) is an error, not a wrap."""
    table, positions = learned_positions_args(table, positions)
    rows = table[positions]  # (..., D)
    check_read_rows(rows)
    return rows


def learned_positions_args(table, positions):
    """Validated (table (P, D), integer positions in [0, P)); backends check through this,
    and then run check_read_rows on the rows they read: table's values are not looked at here."""
    table = float_array("table", table, ndim=2, allow_nan=True, allow_inf=True)
    return table, int_array("positions", positions, low=0, high=table.shape[0])


def check_read_rows(rows):
    """No NaN or inf in rows = table[positions], the only rows a lookup reads (as the embedding
    checks only the rows its ids read)."""
    float_array("table", rows)


def sinusoidal_positions_bound(dtype, positions, dim=16, base=10000.0):
    """Allowance per element at `dtype`: |d PE| <= u (theta_i (p_i + 2) + LIBM_ERROR) for
    theta_i = p base^(-2i/dim) carrying the default inverse frequency's error p_i u plus the
    product's and the position's (see llmref.ref.rope.rope_bound), |d sin| <= |d theta|, and
    sin/cos within LIBM_ERROR u."""
    positions = sinusoidal_positions_args(positions, dim, base)
    u = angle_roundoff(dtype)
    scaling = RopeScaling(base=base)
    inv, _ = inverse_frequencies(dim, 0, scaling)
    theta = positions.astype(np.float64)[..., None] * inv  # (L, dim/2)
    per_angle = u * (theta * (rope_inv_freq_error(u, dim, 0, scaling) / u + 2) + LIBM_ERROR)
    return {"pe": np.repeat(per_angle, 2, axis=-1)}  # (L, dim): sin, cos of each angle
