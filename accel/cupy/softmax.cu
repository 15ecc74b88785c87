// Softmax and log-softmax over the rows of a (rows, n) matrix: one thread block per row.
//
// Three passes over the row, each a block-wide reduction through shared memory:
//   m = max_j x_j;   s = sum_j exp(x_j - m);   y_j = exp(x_j - m) / s   (or x_j - m - log s).
// Inputs are float, f16_t or bf16_t (raw 16-bit patterns, common.cuh); accumulation is
// float32 and each output is rounded once. Reference: llmref.ref.softmax.
#include "common.cuh"

#define THREADS 256

// Block-wide reduction of one value per thread; `is_max` picks max, otherwise sum.
__device__ float block_reduce(float v, float* shared, bool is_max) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int stride = THREADS / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) {
            float other = shared[threadIdx.x + stride];
            shared[threadIdx.x] = is_max ? fmaxf(shared[threadIdx.x], other)
                                         : shared[threadIdx.x] + other;
        }
        __syncthreads();
    }
    float result = shared[0];
    __syncthreads();  // shared[] is reused by the next reduction
    return result;
}

template <typename T>
__device__ void softmax_row(const T* x, T* y, int n, int log_output) {
    __shared__ float shared[THREADS];
    const long base = (long)blockIdx.x * n;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < n; j += THREADS) m = fmaxf(m, load(x, base + j));
    m = block_reduce(m, shared, true);
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += THREADS) s += expf(load(x, base + j) - m);
    s = block_reduce(s, shared, false);
    const float log_s = logf(s);
    for (int j = threadIdx.x; j < n; j += THREADS) {
        float shifted = load(x, base + j) - m;
        store(y, base + j, log_output ? shifted - log_s : expf(shifted) / s);
    }
}

extern "C" {
__global__ void softmax_f32(const float* x, float* y, int n, int log_output) {
    softmax_row(x, y, n, log_output);
}
__global__ void softmax_f16(const f16_t* x, f16_t* y, int n, int log_output) {
    softmax_row(x, y, n, log_output);
}
__global__ void softmax_bf16(const bf16_t* x, bf16_t* y, int n, int log_output) {
    softmax_row(x, y, n, log_output);
}
}
