"""The paged KV scatter (reference: llmref.ref.kv_write), numba-cuda's per-word loop (see
llmref.accel.kernels).

Words are visited as first, first + step, ... of the T*W words of the new rows: a numba-cuda
thread visits the ones of its grid-stride. numba-cpu copies whole rows instead
(llmref.accel.numba_cpu._rows): the e // W, e % W here cost a division per word.
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
