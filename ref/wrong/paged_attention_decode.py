"""Wrong paged_attention_decode variants seen in the wild; each must fail its audit."""
import numpy as np


def _decode(q, k_cache, v_cache, block_tables, seq_lens, scale, token_keys, kv_head):
    """Paged decode with the token enumeration and head mapping supplied by the variant."""
    batch, hq, d = q.shape
    hkv = k_cache.shape[2]
    scale = scale or 1.0 / np.sqrt(d)
    out = np.empty_like(q)
    for b in range(batch):
        places = token_keys(block_tables[b], int(seq_lens[b]), k_cache.shape[1])
        k = np.stack([k_cache[blk, off] for blk, off in places])  # (n, Hkv, D)
        v = np.stack([v_cache[blk, off] for blk, off in places])
        for h in range(hq):
            g = kv_head(h, hq, hkv)
            s = (k[:, g, :] @ q[b, h]) * q.dtype.type(scale)
            p = np.exp(s - s.max())
            out[b, h] = (p @ v[:, g, :]) / p.sum()
    return out


def _through_table(table, n, bs):
    return [(table[j // bs], j % bs) for j in range(n)]


def _repeat(h, hq, hkv):
    return h // (hq // hkv)


def decode_reads_past_length(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    """Reads the whole last block, including the unwritten slots after seq_len."""
    def whole_blocks(table, n, bs):
        return _through_table(table, -(-n // bs) * bs, bs)
    return _decode(q, k_cache, v_cache, block_tables, seq_lens, scale, whole_blocks, _repeat)


def decode_gqa_tiled(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    """Maps query head h to KV head h % Hkv (tiling) instead of h // (Hq / Hkv) (repeat)."""
    return _decode(q, k_cache, v_cache, block_tables, seq_lens, scale, _through_table,
                   lambda h, hq, hkv: h % hkv)


def decode_ignores_block_table(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    """Treats logical block j // bs as the physical block (assumes a contiguous pool)."""
    def contiguous(table, n, bs):
        return [(j // bs, j % bs) for j in range(n)]
    return _decode(q, k_cache, v_cache, block_tables, seq_lens, scale, contiguous, _repeat)
