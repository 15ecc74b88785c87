// LayerNorm and RMSNorm over the rows of a (rows, n) matrix: one thread block per row.
//
//   layernorm: mean = sum_j x_j / n;  var = sum_j (x_j - mean)^2 / n;
//              y_j = (x_j - mean) * rsqrt(var + eps) * w_j + b_j
//   rmsnorm:   y_j = x_j * rsqrt(sum_j x_j^2 / n + eps) * (weight_offset + w_j)
//
// Each statistic is a block-wide sum through shared memory. Inputs and weights are float,
// __half or __nv_bfloat16 (raw 16-bit patterns from the host); accumulation is float32 and
// each output is rounded once. Reference: llmref.ref.norms.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#define THREADS 256

__device__ __forceinline__ float load(const float* p, long i) { return p[i]; }
__device__ __forceinline__ float load(const __half* p, long i) { return __half2float(p[i]); }
__device__ __forceinline__ float load(const __nv_bfloat16* p, long i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store(float* p, long i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half* p, long i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, long i, float v) { p[i] = __float2bfloat16_rn(v); }

// Sum of one value per thread over the block, returned to every thread.
__device__ float block_sum(float v, float* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int stride = THREADS / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    float total = shared[0];
    __syncthreads();  // shared[] is reused by the next reduction
    return total;
}

template <typename T>
__device__ void layernorm_row(const T* x, const T* w, const T* b, T* y, int n, float eps) {
    __shared__ float shared[THREADS];
    const long base = (long)blockIdx.x * n;
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += THREADS) s += load(x, base + j);
    const float mean = block_sum(s, shared) / n;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < n; j += THREADS) {
        float d = load(x, base + j) - mean;
        ss += d * d;
    }
    const float inv_std = rsqrtf(block_sum(ss, shared) / n + eps);
    for (int j = threadIdx.x; j < n; j += THREADS)
        store(y, base + j, (load(x, base + j) - mean) * inv_std * load(w, j) + load(b, j));
}

template <typename T>
__device__ void rmsnorm_row(const T* x, const T* w, T* y, int n, float eps, float weight_offset) {
    __shared__ float shared[THREADS];
    const long base = (long)blockIdx.x * n;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < n; j += THREADS) {
        float v = load(x, base + j);
        ss += v * v;
    }
    const float inv_rms = rsqrtf(block_sum(ss, shared) / n + eps);
    // The Gemma offset is added in float32, never in the 16-bit storage type.
    for (int j = threadIdx.x; j < n; j += THREADS)
        store(y, base + j, load(x, base + j) * inv_rms * (weight_offset + load(w, j)));
}

extern "C" {
__global__ void layernorm_f32(const float* x, const float* w, const float* b, float* y, int n, float eps) {
    layernorm_row(x, w, b, y, n, eps);
}
__global__ void layernorm_f16(const __half* x, const __half* w, const __half* b, __half* y, int n, float eps) {
    layernorm_row(x, w, b, y, n, eps);
}
__global__ void layernorm_bf16(const __nv_bfloat16* x, const __nv_bfloat16* w, const __nv_bfloat16* b,
                               __nv_bfloat16* y, int n, float eps) {
    layernorm_row(x, w, b, y, n, eps);
}
__global__ void rmsnorm_f32(const float* x, const float* w, float* y, int n, float eps, float weight_offset) {
    rmsnorm_row(x, w, y, n, eps, weight_offset);
}
__global__ void rmsnorm_f16(const __half* x, const __half* w, __half* y, int n, float eps, float weight_offset) {
    rmsnorm_row(x, w, y, n, eps, weight_offset);
}
__global__ void rmsnorm_bf16(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int n,
                             float eps, float weight_offset) {
    rmsnorm_row(x, w, y, n, eps, weight_offset);
}
}
