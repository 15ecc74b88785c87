"""A cache hint numba has no word for: LLVM's llvm.prefetch, as a numba intrinsic.

prefetch_row(row) asks for every 64-byte line of a contiguous 1-D array to be brought into
the L2 cache, and does not wait for it. The hardware prefetchers follow a sequential stream
within a 4 kB page; a kernel that jumps between pages in an order only its own tables know
(paged attention reading a sequence's blocks, each at a random place in the pool) stalls on
DRAM at every jump, and the hint is how it tells the cache where it goes next. A hint is
never a load: it cannot fault, and nothing depends on it but the time.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LINE = 64  # bytes in a cache line
READ, INTO_L2, DATA = 0, 2, 1  # llvm.prefetch(address, rw, locality, cache type)


@intrinsic
def _prefetch(typingctx, row, index):
    """Hint the line holding row[index] (row: a C-contiguous 1-D array) into L2, for reading."""
    if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C"
            and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(row)(context, builder, args[0]).data
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]), "llvm.prefetch.p0i8")
        address = builder.bitcast(builder.gep(data, [args[1]]), byte_ptr)
        builder.call(hint, [address, ir.Constant(i32, READ), ir.Constant(i32, INTO_L2), ir.Constant(i32, DATA)])
        return context.get_dummy_value()
    return types.none(row, index), codegen


@njit(inline="always")
def prefetch_row(row):
    """Hint every cache line of row (C-contiguous, 1-D) into L2."""
    step = max(1, LINE // row.itemsize)
    for e in range(0, row.shape[0], step):
        _prefetch(row, e)
