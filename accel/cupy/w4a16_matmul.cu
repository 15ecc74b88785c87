// W4A16 matmul: y[m, n] = sum_k x[m, k] * (q[n, k] - z[n, k/G]) * s[n, k/G]
// (spec: specs/w4a16_matmul.yaml; reference: llmref.ref.w4a16_matmul.w4a16_matmul).
//
// Weights arrive in llmref's canonical INT4 layout, (N, K/2) bytes with byte j = q[2j] | q[2j+1] << 4,
// which read as little-endian 32-bit words holds q[n, 8w + i] at bits [4i, 4i+4): the kernel loads
// 16 bytes (32 codes) per lane and dequantizes them in registers; no fp16 weight is ever stored.
//
// One warp per output column n. Its lanes stride over K in chunks of 32 codes (all in one group,
// since G is a multiple of 32), and for each chunk accumulate MT activation rows in fp32;
// a warp shuffle reduction finishes each y[m, n]. Rows of x beyond MT are done in further passes
// over the same weight row (2 KiB for K = 4096: it stays in L1/L2).
//
// Dequantization is exact: the code becomes a float with the magic-number trick
// as_float(0x4B000000 | q) = 2^23 + q, minus (2^23 + z) gives q - z exactly, then one product
// with the scale: the same single rounding as the reference's (q - z) * s in float32.
//
// Activations and scales are float, f16_t or bf16_t (raw 16-bit patterns, common.cuh).
#include "common.cuh"

#define WARPS 8          // warps per block = output columns per block
// MT (activation rows per pass) is a template parameter: 1, 2, 4 or 8, the host picks the
// smallest >= M (capped at 8), so a decode step (M = 1) keeps few registers and high occupancy.

template <typename T, int MT>
__device__ void w4a16(const T* __restrict__ x, const uint4* __restrict__ w,
                      const T* __restrict__ scales, const unsigned char* __restrict__ zeros,
                      T* __restrict__ y, int M, int N, int K, int G) {
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * WARPS + threadIdx.x / 32;
    if (n >= N) return;  // a whole warp leaves together
    const int groups = K / G;
    const int chunks = K / 32;  // 16-byte chunks of 32 codes in one weight row
    const uint4* row = w + (size_t)n * chunks;

    for (int m0 = 0; m0 < M; m0 += MT) {
        float acc[MT];
#pragma unroll
        for (int r = 0; r < MT; ++r) acc[r] = 0.0f;

#pragma unroll 2
        for (int c = lane; c < chunks; c += 32) {
            const uint4 packed = row[c];
            const int k0 = c * 32;
            const int g = n * groups + k0 / G;
            const float s = load(scales, g);
            const float offset = 8388608.0f + (float)zeros[g];  // 2^23 + z
            const unsigned int words[4] = {packed.x, packed.y, packed.z, packed.w};
            float wv[32];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
#pragma unroll
                for (int i = 0; i < 8; ++i) {
                    const unsigned int q = (words[j] >> (4 * i)) & 0xfu;
                    wv[8 * j + i] = (__uint_as_float(0x4B000000u | q) - offset) * s;
                }
            }
#pragma unroll
            for (int r = 0; r < MT; ++r) {
                if (m0 + r < M) {
                    const size_t base = (size_t)(m0 + r) * K + k0;
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        float xv[8];
                        load_vector<T, 8>(x + base + 8 * j, xv);  // rows are 32-element aligned
#pragma unroll
                        for (int i = 0; i < 8; ++i) acc[r] = fmaf(xv[i], wv[8 * j + i], acc[r]);
                    }
                }
            }
        }
#pragma unroll
        for (int r = 0; r < MT; ++r) {
#pragma unroll
            for (int off = 16; off > 0; off /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
        }
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < MT; ++r)
                if (m0 + r < M) store(y, (long)(m0 + r) * N + n, acc[r]);
        }
    }
}

#define W4A16_KERNEL(NAME, T, MT)                                                                \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                      \
    NAME(const T* x, const uint4* w, const T* scales, const unsigned char* zeros, T* y,           \
         int M, int N, int K, int G) {                                                            \
        w4a16<T, MT>(x, w, scales, zeros, y, M, N, K, G);                                         \
    }

W4A16_KERNEL(w4a16_f32_m1, float, 1)
W4A16_KERNEL(w4a16_f32_m2, float, 2)
W4A16_KERNEL(w4a16_f32_m4, float, 4)
W4A16_KERNEL(w4a16_f32_m8, float, 8)
W4A16_KERNEL(w4a16_f16_m1, f16_t, 1)
W4A16_KERNEL(w4a16_f16_m2, f16_t, 2)
W4A16_KERNEL(w4a16_f16_m4, f16_t, 4)
W4A16_KERNEL(w4a16_f16_m8, f16_t, 8)
W4A16_KERNEL(w4a16_bf16_m1, bf16_t, 1)
W4A16_KERNEL(w4a16_bf16_m2, bf16_t, 2)
W4A16_KERNEL(w4a16_bf16_m4, bf16_t, 4)
W4A16_KERNEL(w4a16_bf16_m8, bf16_t, 8)
