"""The LM-head logits (reference: llmref.ref.lm_head), numba-cuda's loop (see
llmref.accel.kernels).

Logits are visited as first, first + step, ... of the T*V logits: a numba-cuda thread the
ones of its grid-stride (thread index, grid size). numba-cpu runs its own loop
(llmref.accel.numba_cpu.lm_head): one logit at a time reads W T times, 5x slower than BLAS.
"""


def logits(h, w, first, step, out):
    """out[t, v] = sum_d h[t, d] * w[v, d], accumulated in the compute dtype; h (T, D), w (V, D)."""
    vocab = w.shape[0]
    for k in range(first, h.shape[0] * vocab, step):
        t, v = k // vocab, k % vocab
        acc = 0.0
        for d in range(h.shape[1]):
            acc += h[t, d] * w[v, d]
        out[t, v] = acc
