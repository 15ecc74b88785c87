"""Online (flash-style) attention of query rows (reference: llmref.ref.online_attention),
shared by numba-cpu and numba-cuda (see llmref.accel.kernels). It is numba-cuda's online
attention and sdpa (key blocks of one key: the streaming softmax, one pass per row) and the
attention of both backends' kv_cache_decode; numba-cpu's sdpa, online attention and MLA run
the same recurrence with the dot products as matrix products
(llmref.accel.numba_cpu._attention).

Rows are visited as first, first + step, ... of the B*Hq*Lq query rows: numba-cpu walks them
all (0, 1), a numba-cuda thread the ones of its grid-stride (thread index, grid size).
"""
import math


def online_rows(q, k, v, keep_key, causal, window, scale, zero, neg_inf, first, step, scores,
                out, lse):
    """out[b, h, i] and lse[b, h, i] of every visited row, one key block at a time:

      m' = max(m, max_j s_j);  l' = l exp(m - m') + sum_j exp(s_j - m');
      o' = o exp(m - m') + sum_j exp(s_j - m') v_j;   out = o / l,  lse = m + log l
    (a row with no key left: out 0, lse -inf). The block size is scores.shape[1]; the
    block's scores go to scratch row scores[first] (one per thread; numba-cpu's has one).
    o is held in out. zero, neg_inf and scale are in the accumulation dtype, which holds
    every running quantity. Causal (bottom-right) and window bounds and keep_key as sdpa."""
    batch, n_q_heads, len_q, dim = q.shape
    len_k, dim_v = k.shape[2], v.shape[3]
    group = n_q_heads // k.shape[1]
    block_size = scores.shape[1]
    for row in range(first, batch * n_q_heads * len_q, step):
        b = row // (n_q_heads * len_q)
        h = (row // len_q) % n_q_heads
        i = row % len_q
        g = h // group
        position = i + len_k - len_q  # bottom-right aligned absolute position
        hi = min(position, len_k - 1) if causal else len_k - 1
        lo = max(position - window + 1, 0) if window > 0 else 0
        for d in range(dim_v):
            out[b, h, i, d] = zero
        m = neg_inf
        total = zero
        for start in range(0, len_k, block_size):
            stop = min(start + block_size, len_k)
            # 1. the block's scores (-inf where masked) and their maximum
            block_max = neg_inf
            for j in range(start, stop):
                s = neg_inf
                if lo <= j and j <= hi and keep_key[b, j]:
                    dot = zero
                    for d in range(dim):
                        dot += q[b, h, i, d] * k[b, g, j, d]
                    s = dot * scale
                scores[first, j - start] = s
                block_max = max(block_max, s)
            if block_max == neg_inf:
                continue  # nothing kept in this block: the state is unchanged
            # 2. rescale the state to the new maximum, then add the block
            m_new = max(m, block_max)
            rescale = math.exp(m - m_new)  # exp(-inf) = 0 before the first key
            total = total * rescale
            for d in range(dim_v):
                out[b, h, i, d] = out[b, h, i, d] * rescale
            for j in range(start, stop):
                s = scores[first, j - start]
                if s != neg_inf:
                    p = math.exp(s - m_new)
                    total += p
                    for d in range(dim_v):
                        out[b, h, i, d] = out[b, h, i, d] + p * v[b, g, j, d]
            m = m_new
        if total > 0:
            for d in range(dim_v):
                out[b, h, i, d] = out[b, h, i, d] / total
            lse[b, h, i] = m + math.log(total)
        else:
            lse[b, h, i] = neg_inf
