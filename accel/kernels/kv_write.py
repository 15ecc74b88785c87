"""The paged KV scatter (reference: llmref.ref.kv_write), shared by numba-cpu and numba-cuda
(see llmref.accel.kernels).

Words are visited as first, first + step, ... of the T*W words of the new rows: numba-cpu
walks them all (0, 1), a numba-cuda thread the ones of its grid-stride.
"""


def scatter_rows(src, slot_mapping, first, step, pool):
    """pool[slot_mapping[t], w] = src[t, w] for every slot >= 0 (-1: a padding token, not
    written). src (T, W) and pool (slots, W) are raw 16-bit words: a bit-exact copy."""
    words = src.shape[1]
    for e in range(first, src.shape[0] * words, step):
        t = e // words
        slot = slot_mapping[t]
        if slot >= 0:
            pool[slot, e % words] = src[t, e % words]
