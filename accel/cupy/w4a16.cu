// W4A16 matmul: y[m, n] = sum_k x[m, k] * (q[n, k] - z[n, k/G]) * s[n, k/G]
// (spec: specs/w4a16_matmul.yaml; reference: llmref.ref.quant.w4a16_matmul).
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
// Activation kinds: 0 = float32, 1 = float16, 2 = bfloat16 (fp16/bf16 passed as uint16 bits).

#define WARPS 8          // warps per block = output columns per block
// MT (activation rows per pass) is a template parameter: 1, 2, 4 or 8, the host picks the
// smallest >= M (capped at 8), so a decode step (M = 1) keeps few registers and high occupancy.

__device__ __forceinline__ float half_bits_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short float_to_half_bits(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float bf16_bits_to_float(unsigned short b) {
    return __uint_as_float(((unsigned int)b) << 16);
}

__device__ __forceinline__ unsigned short float_to_bf16_bits(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return (unsigned short)(u >> 16);
}

template <int KIND>
__device__ __forceinline__ float scalar_to_float(const void* p, size_t i) {
    if (KIND == 0) return ((const float*)p)[i];
    unsigned short b = ((const unsigned short*)p)[i];
    return KIND == 1 ? half_bits_to_float(b) : bf16_bits_to_float(b);
}

// Eight consecutive activations x[i .. i+8) as floats (i a multiple of 8; rows 16-byte aligned).
template <int KIND>
__device__ __forceinline__ void load8(const void* x, size_t i, float* out) {
    if (KIND == 0) {
        const float4* p = (const float4*)((const float*)x + i);
        float4 a = p[0], b = p[1];
        out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
        out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
    } else {
        uint4 v = *(const uint4*)((const unsigned short*)x + i);
        unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int t = 0; t < 4; ++t) {  // little-endian: element 2t in the low half
            unsigned short lo = (unsigned short)(w[t] & 0xffffu), hi = (unsigned short)(w[t] >> 16);
            out[2 * t] = KIND == 1 ? half_bits_to_float(lo) : bf16_bits_to_float(lo);
            out[2 * t + 1] = KIND == 1 ? half_bits_to_float(hi) : bf16_bits_to_float(hi);
        }
    }
}

template <int KIND>
__device__ __forceinline__ void store(void* y, size_t i, float v) {
    if (KIND == 0) ((float*)y)[i] = v;
    else ((unsigned short*)y)[i] = KIND == 1 ? float_to_half_bits(v) : float_to_bf16_bits(v);
}

template <int KIND, int MT>
__device__ void w4a16(const void* __restrict__ x, const uint4* __restrict__ w,
                      const void* __restrict__ scales, const unsigned char* __restrict__ zeros,
                      void* __restrict__ y, int M, int N, int K, int G) {
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
            const float s = scalar_to_float<KIND>(scales, g);
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
                        load8<KIND>(x, base + 8 * j, xv);
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
                if (m0 + r < M) store<KIND>(y, (size_t)(m0 + r) * N + n, acc[r]);
        }
    }
}

#define W4A16_KERNEL(NAME, KIND, MT, T)                                                          \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                      \
    NAME(const T* x, const uint4* w, const T* scales, const unsigned char* zeros, T* y,           \
         int M, int N, int K, int G) {                                                            \
        w4a16<KIND, MT>(x, w, scales, zeros, y, M, N, K, G);                                      \
    }

W4A16_KERNEL(w4a16_f32_m1, 0, 1, float)
W4A16_KERNEL(w4a16_f32_m2, 0, 2, float)
W4A16_KERNEL(w4a16_f32_m4, 0, 4, float)
W4A16_KERNEL(w4a16_f32_m8, 0, 8, float)
W4A16_KERNEL(w4a16_f16_m1, 1, 1, unsigned short)
W4A16_KERNEL(w4a16_f16_m2, 1, 2, unsigned short)
W4A16_KERNEL(w4a16_f16_m4, 1, 4, unsigned short)
W4A16_KERNEL(w4a16_f16_m8, 1, 8, unsigned short)
W4A16_KERNEL(w4a16_bf16_m1, 2, 1, unsigned short)
W4A16_KERNEL(w4a16_bf16_m2, 2, 2, unsigned short)
W4A16_KERNEL(w4a16_bf16_m4, 2, 4, unsigned short)
W4A16_KERNEL(w4a16_bf16_m8, 2, 8, unsigned short)
