"""The attention core of weight-absorbed MLA over the latent cache (reference:
llmref.ref.mla), numba-cuda's loop (see llmref.accel.kernels; numba-cpu computes a whole
prefill in the naive form, cheaper there: llmref.accel.numba_cpu.mla).

Rows are visited as first, first + step, ... of the B*H*L (sequence, head, token) rows: a
numba-cuda thread the ones of its grid-stride.
"""
import math


def latent_rows(q_lat, q_pe, c_kv, k_pe, scale, zero, neg_inf, first, step, out):
    """out[b, h, t] = sum_{j <= t} softmax_j(s) c_kv[b, j]   (causal),
       s_j = scale (q_lat[b, h, t] . c_kv[b, j] + q_pe[b, h, t] . k_pe[b, j])

    q_lat (B, H, L, Rkv), q_pe (B, H, L, dr), c_kv (B, L, Rkv), k_pe (B, L, dr) shared by the
    heads. One pass per row with the online softmax (running max and sum; the unnormalised
    output, held in out, rescaled by exp(m - m') when the maximum rises). zero, neg_inf and
    scale are in the accumulation dtype, which holds every running quantity."""
    batch, heads, length, rank = q_lat.shape
    for row in range(first, batch * heads * length, step):
        b = row // (heads * length)
        h = (row // length) % heads
        t = row % length
        for c in range(rank):
            out[b, h, t, c] = zero
        m = neg_inf
        total = zero
        for j in range(t + 1):  # causal: the keys of tokens 0..t
            dot = zero
            for c in range(rank):
                dot += q_lat[b, h, t, c] * c_kv[b, j, c]
            for r in range(k_pe.shape[2]):
                dot += q_pe[b, h, t, r] * k_pe[b, j, r]
            s = dot * scale
            m_new = max(m, s)
            rescale = math.exp(m - m_new)  # exp(-inf) = 0 on the first key
            p = math.exp(s - m_new)
            total = total * rescale + p
            for c in range(rank):
                out[b, h, t, c] = out[b, h, t, c] * rescale + p * c_kv[b, j, c]
            m = m_new
        for c in range(rank):
            out[b, h, t, c] = out[b, h, t, c] / total
