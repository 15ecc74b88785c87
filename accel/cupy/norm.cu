// LayerNorm and RMSNorm over the rows of a (rows, n) matrix: one thread block per row.
//
//   layernorm: mean = sum_j x_j / n;  var = sum_j (x_j - mean)^2 / n;
//              y_j = (x_j - mean) * rsqrt(var + eps) * w_j + b_j
//   rmsnorm:   y_j = x_j * rsqrt(sum_j x_j^2 / n + eps) * (weight_offset + w_j)
//
// Each statistic is a block-wide sum through shared memory. Inputs and weights are float,
// f16_t or bf16_t (raw 16-bit patterns from the host, common.cuh); accumulation is float32
// and each output is rounded once. Reference: llmref.ref.norm.
#include "common.cuh"

#define THREADS 256

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
__global__ void layernorm_f16(const f16_t* x, const f16_t* w, const f16_t* b, f16_t* y, int n, float eps) {
    layernorm_row(x, w, b, y, n, eps);
}
__global__ void layernorm_bf16(const bf16_t* x, const bf16_t* w, const bf16_t* b,
                               bf16_t* y, int n, float eps) {
    layernorm_row(x, w, b, y, n, eps);
}
__global__ void rmsnorm_f32(const float* x, const float* w, float* y, int n, float eps, float weight_offset) {
    rmsnorm_row(x, w, y, n, eps, weight_offset);
}
__global__ void rmsnorm_f16(const f16_t* x, const f16_t* w, f16_t* y, int n, float eps, float weight_offset) {
    rmsnorm_row(x, w, y, n, eps, weight_offset);
}
__global__ void rmsnorm_bf16(const bf16_t* x, const bf16_t* w, bf16_t* y, int n,
                             float eps, float weight_offset) {
    rmsnorm_row(x, w, y, n, eps, weight_offset);
}
}
