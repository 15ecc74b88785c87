"""NF4 quantization as a numba.njit loop over blocks (reference: llmref.ref.nf4_quantize),
the blocks spread across threads (prange; llmref.accel.numba_cpu._threads).

The argument checks are the reference's (nf4_quantize_args); the absmax, nearest codes and
packing are the shared math of llmref.accel.kernels.nf4_quantize.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import nf4_quantize as kernels
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.nf4_quantize import NF4_CODEBOOK, nf4_quantize_args

_block_absmax = numba.njit(cache=True)(kernels.block_absmax)
_pack_pair = numba.njit(cache=True)(kernels.pack_pair)


@threaded_loop()
def _nf4_blocks(x, block_size, book, packed, absmax, x_hat):
    """Block by block: its absmax, then its bytes (a block is whole bytes: block_size is even)."""
    for block in numba.prange(absmax.shape[0]):
        b = np.int64(block)  # uint64 in the parfor body: callees would compile twice
        absmax[b] = _block_absmax(x, b, block_size)
        for i in range(b * block_size // 2, (b + 1) * block_size // 2):
            _pack_pair(x, i, block_size, book, absmax, packed, x_hat)


def nf4_quantize(x, block_size=64):
    x, block_size = nf4_quantize_args(x, block_size)
    xs = widen(x)
    packed = np.empty(x.size // 2, np.uint8)
    absmax = np.empty(x.size // block_size, xs.dtype)
    x_hat = np.empty_like(xs)
    _nf4_blocks(xs.size, xs, block_size, NF4_CODEBOOK.astype(xs.dtype), packed, absmax, x_hat)
    return packed, absmax.astype(x.dtype, copy=False), x_hat.astype(x.dtype, copy=False)
