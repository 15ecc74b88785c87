// The paged KV write (spec: specs/kv_write.yaml): a bit-exact scatter of new K or V rows into
// the block pool, at every dtype.
//
//   kv_write_u16 / kv_write_u128  row t of (T, row words) goes to row slot_mapping[t] of the
//     pool, skipped when the slot is -1 (padding). Rows are copied in words of 2 bytes, or of
//     16 bytes (uint4) when a row is a whole number of them; the host picks.
#include "common.cuh"

// dst row slot_mapping[t] = src row t, in words of W.
template <typename W>
__device__ void scatter_rows(const W* __restrict__ src, const long long* __restrict__ slot_mapping,
                             W* __restrict__ pool, int row_words) {
    const int t = blockIdx.x;
    const long long slot = slot_mapping[t];
    if (slot < 0) return;  // padding token
    for (int w = threadIdx.x; w < row_words; w += blockDim.x)
        pool[slot * row_words + w] = src[(long)t * row_words + w];
}

extern "C" __global__ void kv_write_u16(const unsigned short* src, const long long* slot_mapping,
                                        unsigned short* pool, int row_words) {
    scatter_rows(src, slot_mapping, pool, row_words);
}

extern "C" __global__ void kv_write_u128(const uint4* src, const long long* slot_mapping, uint4* pool,
                                         int row_words) {
    scatter_rows(src, slot_mapping, pool, row_words);
}
