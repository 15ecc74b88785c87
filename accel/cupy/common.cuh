// What every CUDA C source in accel/cupy shares: the 16-bit storage types, their conversions
// to and from float, and scalar and vector loads and stores through them.
//
// Self-contained on purpose: CuPy compiles the sources with NVRTC, which on a machine with only
// pip packages finds no CUDA toolkit headers (CuPy bundles cuda_fp16.h, not cuda_bf16.h). So
// float16 and bfloat16 are stored here as their bit patterns (the host passes uint16 arrays:
// llmref.accel._host.raw_bits) and converted with a PTX instruction (float16) or integer
// operations (bfloat16). Every conversion to a 16-bit type rounds once, to nearest even.
// _module.py puts this folder on NVRTC's include path; nvcc needs -I accel/cupy.
#pragma once

struct alignas(2) f16_t { unsigned short bits; };   // IEEE 754 binary16
struct alignas(2) bf16_t { unsigned short bits; };  // bfloat16: the high half of a float32

#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float to_float(float x) { return x; }

__device__ __forceinline__ float to_float(f16_t x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));  // exact
    return f;
}

__device__ __forceinline__ float to_float(bf16_t x) { return __uint_as_float((unsigned int)x.bits << 16); }

template <typename T> __device__ __forceinline__ T from_float(float v);

template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }

template <> __device__ __forceinline__ f16_t from_float<f16_t>(float v) {
    f16_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(v));  // round to nearest even
    return h;
}

template <> __device__ __forceinline__ bf16_t from_float<bf16_t>(float v) {
    unsigned int u = __float_as_uint(v);
    bf16_t b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it a (quiet) NaN
        b.bits = (unsigned short)((u >> 16) | 0x40u);
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even on the dropped 16 bits
        b.bits = (unsigned short)(u >> 16);
    }
    return b;
}

// p[i] as a float; p[i] = v, rounded once to T.
template <typename T> __device__ __forceinline__ float load(const T* p, long i) { return to_float(p[i]); }
template <typename T> __device__ __forceinline__ void store(T* p, long i, float v) { p[i] = from_float<T>(v); }

// p[0 .. N) as floats in one vector load: p must be aligned to N * sizeof(T) bytes.
template <typename T, int N>
__device__ __forceinline__ void load_vector(const T* __restrict__ p, float (&out)[N]) {
    struct alignas(sizeof(T) * N) Run { T v[N]; };
    const Run run = *reinterpret_cast<const Run*>(p);
#pragma unroll
    for (int t = 0; t < N; ++t) out[t] = to_float(run.v[t]);
}
