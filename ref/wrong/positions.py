"""Wrong absolute position-encoding variants seen in the wild; each must fail its audit."""
import numpy as np


def sinusoidal_concatenated(positions, dim=16, base=10000.0):
    """[sin(all frequencies), cos(all frequencies)] instead of interleaved pairs."""
    inv_freq = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    angle = positions.astype(np.float64)[..., None] * inv_freq
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)


def learned_positions_one_based(table, positions):
    """table[positions + 1], clamped to the last row."""
    return table[np.minimum(positions + 1, table.shape[0] - 1)]
