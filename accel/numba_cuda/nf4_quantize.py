"""NF4 quantization as numba.cuda kernels (reference: llmref.ref.nf4_quantize).

Two launches: one thread per block finds its absmax, then one thread per packed byte writes
the byte and its two dequantized values into guarded buffers. The math is
llmref.accel.kernels.nf4_quantize, shared with numba-cpu.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import nf4_quantize as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.nf4_quantize import NF4_CODEBOOK, nf4_quantize_args

_block_absmax = cuda.jit(device=True)(kernels.block_absmax)
_pack_pair = cuda.jit(device=True)(kernels.pack_pair)


@cuda.jit
def _absmax_kernel(x, block_size, absmax):
    b = cuda.grid(1)
    if b < absmax.shape[0]:
        absmax[b] = _block_absmax(x, b, block_size)


@cuda.jit
def _pairs_kernel(x, block_size, book, absmax, packed, x_hat):
    i = cuda.grid(1)
    if i < packed.shape[0]:
        _pack_pair(x, i, block_size, book, absmax, packed, x_hat)


def nf4_quantize(x, block_size=64):
    x, block_size = nf4_quantize_args(x, block_size)
    xs = widen(x)
    blocks, half = x.size // block_size, x.size // 2
    d_x = cuda.to_device(xs)
    absmax = Guarded((blocks,), xs.dtype, "numba-cuda nf4 absmax")
    _absmax_kernel[grid(blocks), THREADS](d_x, block_size, absmax.device)
    packed = Guarded((half,), np.uint8, "numba-cuda nf4 packed")
    x_hat = Guarded((x.size,), xs.dtype, "numba-cuda nf4 x_hat")
    _pairs_kernel[grid(half), THREADS](d_x, block_size, cuda.to_device(NF4_CODEBOOK.astype(xs.dtype)),
                                       absmax.device, packed.device, x_hat.device)
    return packed.result(), absmax.result().astype(x.dtype), x_hat.result().astype(x.dtype)
