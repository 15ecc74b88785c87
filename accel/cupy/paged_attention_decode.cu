// Paged-attention decode (spec: specs/paged_attention_decode.yaml). The paged KV write is in
// kv_write.cu.
//
// Pool layout: k_cache, v_cache (num_blocks, block_size, Hkv, D); token j of sequence b is
// row (block_tables[b][j / block_size] * block_size + j % block_size) * Hkv + g of a
// (slots * Hkv, D) matrix. K and V are read in place through the block table (no gather).
//
// Decode, one query token per sequence:
//   paged_decode_<dtype>_d<DPL>  grid (partitions, Hkv * head_chunks, B), NUM_WARPS warps.
//     A thread block owns one sequence, one KV head and up to GROUP_TILE query heads of its
//     GQA group, and the tokens [p * partition_size, (p + 1) * partition_size) of partition p.
//     Each K/V row is loaded once (one warp, DPL contiguous elements per lane) and used by
//     every query head of the tile, so a KV head is read once per group, not once per query
//     head. Warp w walks the blocks w, w + NUM_WARPS, ...; per head it keeps an online
//     softmax state (running max m, running sum l, running weighted sum of V in registers),
//     and the warps' states are merged through shared memory at the end:
//       M = max_w m_w,  L = sum_w l_w e^(m_w - M),  O = sum_w acc_w e^(m_w - M) / L.
//     With one partition O is the output; otherwise each partition writes O_p and
//     lse_p = M + log L, and
//   paged_decode_merge_<dtype>   grid (Hq, B) combines them exactly:
//       out = sum_p e^(lse_p - max lse) O_p / sum_p e^(lse_p - max lse).
// float, f16_t and bf16_t (raw 16-bit patterns, common.cuh) inputs; float32 accumulation;
// each output element rounded once.
#include "common.cuh"

#define WARP 32
#define NUM_WARPS 4
#define NUM_THREADS (NUM_WARPS * WARP)
#define GROUP_TILE 8   // query heads per thread block (a GQA group is split into tiles of 8)
#define MAX_DPL 8      // head dim up to 8 * 32 = 256

// DPL elements starting at row[first] as floats: one vector load when the whole run lies
// inside the row and rows are DPL-aligned (D % DPL == 0), else element by element with
// zeros past the end.
template <typename T, int DPL>
__device__ __forceinline__ void load_run(const T* __restrict__ row, int first, int d, float (&x)[DPL]) {
    if (first + DPL <= d && d % DPL == 0) {
        load_vector<T, DPL>(row + first, x);
    } else {
#pragma unroll
        for (int t = 0; t < DPL; ++t) x[t] = first + t < d ? to_float(row[first + t]) : 0.f;
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = WARP / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Fold one token (this lane's slice of k and v) into every query head's online softmax:
//   s = q . k (warp-wide sum),  m' = max(m, s),  l = l e^(m - m') + e^(s - m'),
//   acc = acc e^(m - m') + e^(s - m') v.
template <int DPL>
__device__ __forceinline__ void online_update(const float (*q_tile)[MAX_DPL * WARP], int first, const float (&k)[DPL],
                                              const float (&v)[DPL], int heads, float (&m)[GROUP_TILE],
                                              float (&l)[GROUP_TILE], float (&acc)[GROUP_TILE][DPL]) {
#pragma unroll
    for (int i = 0; i < GROUP_TILE; ++i) {
        if (i >= heads) break;  // uniform across the block
        float dot = 0.f;
#pragma unroll
        for (int t = 0; t < DPL; ++t) dot = fmaf(q_tile[i][first + t], k[t], dot);
        const float s = warp_sum(dot);  // the same value in every lane: the branch is uniform
        if (s > m[i]) {  // a new running max: rescale what was accumulated so far
            const float correction = expf(m[i] - s);
            l[i] *= correction;
#pragma unroll
            for (int t = 0; t < DPL; ++t) acc[i][t] *= correction;
            m[i] = s;
        }
        const float p = expf(s - m[i]);
        l[i] += p;
#pragma unroll
        for (int t = 0; t < DPL; ++t) acc[i][t] = fmaf(p, v[t], acc[i][t]);
    }
}

template <typename T, int DPL>
__device__ void paged_decode(const T* __restrict__ q,          // (B, Hq, D)
                             const T* __restrict__ k_cache,    // (num_blocks, bs, Hkv, D)
                             const T* __restrict__ v_cache,
                             const int* __restrict__ block_tables,  // (B, max_blocks)
                             const int* __restrict__ seq_lens,      // (B,)
                             T* __restrict__ out,               // (B, Hq, D), one partition
                             float* __restrict__ part_out,      // (B, Hq, max_parts, D)
                             float* __restrict__ part_lse,      // (B, Hq, max_parts)
                             int hq, int hkv, int d, int block_size, int max_blocks,
                             int partition_size, int max_parts, float scale) {
    __shared__ float q_tile[GROUP_TILE][MAX_DPL * WARP];
    __shared__ float warp_m[NUM_WARPS][GROUP_TILE];
    __shared__ float warp_l[NUM_WARPS][GROUP_TILE];
    __shared__ float warp_acc[NUM_WARPS][GROUP_TILE][MAX_DPL * WARP];

    const int part = blockIdx.x, b = blockIdx.z;
    const int group = hq / hkv, chunks = (group + GROUP_TILE - 1) / GROUP_TILE;
    const int g = blockIdx.y / chunks;                              // KV head
    const int h0 = g * group + (blockIdx.y % chunks) * GROUP_TILE;  // first query head of the tile
    const int heads = min(GROUP_TILE, g * group + group - h0);
    const int n = seq_lens[b];
    const int start = part * partition_size;
    if (start >= n) return;  // a shorter sequence has fewer partitions (uniform per block)
    const int end = min(n, start + partition_size);
    const int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, first = lane * DPL;

    // The tile's queries, pre-scaled, in shared memory as float; zero past D and past the
    // tile's heads, so a lane's slice q_tile[i][first .. first + DPL) is always defined.
    for (int idx = threadIdx.x; idx < GROUP_TILE * MAX_DPL * WARP; idx += NUM_THREADS) {
        const int i = idx / (MAX_DPL * WARP), e = idx % (MAX_DPL * WARP);
        q_tile[i][e] = i < heads && e < d ? scale * to_float(q[((long)b * hq + h0 + i) * d + e]) : 0.f;
    }
    __syncthreads();

    float m[GROUP_TILE], l[GROUP_TILE], acc[GROUP_TILE][DPL];
#pragma unroll
    for (int i = 0; i < GROUP_TILE; ++i) {
        m[i] = NEG_INF;
        l[i] = 0.f;
#pragma unroll
        for (int t = 0; t < DPL; ++t) acc[i][t] = 0.f;
    }

    const int* table = block_tables + (long)b * max_blocks;
    const long row_stride = (long)hkv * d;  // elements between consecutive slots
    for (int blk = start / block_size + warp; blk * block_size < end; blk += NUM_WARPS) {
        const long base = (long)table[blk] * block_size * row_stride + (long)g * d;
        const int j_end = min(end - blk * block_size, block_size);
        const int j_begin = max(start - blk * block_size, 0);
        for (int j = j_begin; j < j_end; j += 2) {  // two tokens per step: four loads in flight
            const bool second = j + 1 < j_end;
            float k0[DPL], v0[DPL], k1[DPL], v1[DPL];
            load_run<T, DPL>(k_cache + base + j * row_stride, first, d, k0);
            load_run<T, DPL>(v_cache + base + j * row_stride, first, d, v0);
            if (second) {
                load_run<T, DPL>(k_cache + base + (j + 1) * row_stride, first, d, k1);
                load_run<T, DPL>(v_cache + base + (j + 1) * row_stride, first, d, v1);
            }
            online_update<DPL>(q_tile, first, k0, v0, heads, m, l, acc);
            if (second) online_update<DPL>(q_tile, first, k1, v1, heads, m, l, acc);
        }
    }

    // Merge the warps' online-softmax states.
#pragma unroll
    for (int i = 0; i < GROUP_TILE; ++i) {
        if (lane == 0) {
            warp_m[warp][i] = m[i];
            warp_l[warp][i] = l[i];
        }
#pragma unroll
        for (int t = 0; t < DPL; ++t)
            if (first + t < d) warp_acc[warp][i][first + t] = acc[i][t];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < heads * d; idx += NUM_THREADS) {
        const int i = idx / d, e = idx % d;
        float m_all = NEG_INF;
        for (int w = 0; w < NUM_WARPS; ++w) m_all = fmaxf(m_all, warp_m[w][i]);
        float l_all = 0.f, o = 0.f;
        for (int w = 0; w < NUM_WARPS; ++w) {
            const float weight = warp_l[w][i] > 0.f ? expf(warp_m[w][i] - m_all) : 0.f;  // idle warp: 0
            l_all += warp_l[w][i] * weight;
            o += warp_acc[w][i][e] * weight;
        }
        const long head_row = (long)b * hq + h0 + i;
        if (max_parts == 1) {
            store(out, head_row * d + e, o / l_all);
        } else {
            part_out[(head_row * max_parts + part) * d + e] = o / l_all;
            if (e == 0) part_lse[head_row * max_parts + part] = m_all + logf(l_all);
        }
    }
}

template <typename T>
__device__ void paged_decode_merge(const float* __restrict__ part_out, const float* __restrict__ part_lse,
                                   const int* __restrict__ seq_lens, T* __restrict__ out,
                                   int hq, int d, int partition_size, int max_parts) {
    const int h = blockIdx.x, b = blockIdx.y;
    const int parts = (seq_lens[b] + partition_size - 1) / partition_size;
    const long head_row = (long)b * hq + h;
    const float* lse = part_lse + head_row * max_parts;
    float lse_max = NEG_INF;
    for (int p = 0; p < parts; ++p) lse_max = fmaxf(lse_max, lse[p]);
    float total = 0.f;
    for (int p = 0; p < parts; ++p) total += expf(lse[p] - lse_max);
    for (int e = threadIdx.x; e < d; e += blockDim.x) {
        float o = 0.f;
        for (int p = 0; p < parts; ++p) o += expf(lse[p] - lse_max) * part_out[(head_row * max_parts + p) * d + e];
        store(out, head_row * d + e, o / total);
    }
}

#define DECODE_ARGS(T)                                                                         \
    const T *q, const T *k_cache, const T *v_cache, const int *block_tables, const int *seq_lens, \
        T *out, float *part_out, float *part_lse, int hq, int hkv, int d, int block_size,        \
        int max_blocks, int partition_size, int max_parts, float scale
#define DECODE_CALL                                                                              \
    q, k_cache, v_cache, block_tables, seq_lens, out, part_out, part_lse, hq, hkv, d, block_size, \
        max_blocks, partition_size, max_parts, scale

#define DECODE_KERNEL(NAME, T, DPL) \
    extern "C" __global__ void __launch_bounds__(NUM_THREADS) NAME(DECODE_ARGS(T)) { paged_decode<T, DPL>(DECODE_CALL); }

#define DECODE_KERNELS(SUFFIX, T)                      \
    DECODE_KERNEL(paged_decode_##SUFFIX##_d1, T, 1)    \
    DECODE_KERNEL(paged_decode_##SUFFIX##_d2, T, 2)    \
    DECODE_KERNEL(paged_decode_##SUFFIX##_d4, T, 4)    \
    DECODE_KERNEL(paged_decode_##SUFFIX##_d8, T, 8)    \
    extern "C" __global__ void paged_decode_merge_##SUFFIX(                                   \
        const float* part_out, const float* part_lse, const int* seq_lens, T* out, int hq,    \
        int d, int partition_size, int max_parts) {                                            \
        paged_decode_merge<T>(part_out, part_lse, seq_lens, out, hq, d, partition_size, max_parts); \
    }

DECODE_KERNELS(f32, float)
DECODE_KERNELS(f16, f16_t)
DECODE_KERNELS(bf16, bf16_t)
