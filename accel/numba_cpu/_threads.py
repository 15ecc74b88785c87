"""Loops that take numba's threads only when there is work enough to pay for them.

A kernel whose outer loop is numba.prange is compiled from the same source twice: with
parallel=True, where prange deals its iterations to numba's threads, and without, where
prange is range. Each call takes the threaded build for at least GRAIN elements of work on
more than one thread, the serial one otherwise, as PyTorch's at::parallel_for does
(at::internal::GRAIN_SIZE = 32768 in aten/src/ATen/Parallel.h: "it seemed inefficient to
parallelise over arrays shorter than 32768").

The serial build also saves compiling: numba's parfor pass costs 1.5-8 s a signature on top
of the 0.5-3 s of the loop itself. A cold `llmref check` (small cases, one thread per worker
process) compiles only the serial builds: 119 s of compiling in one process, against 198 s
when these loops were threaded builds only. tests/test_conformance.py runs the goldens
through both builds.

The parfor pass compiles a prange body as a function of its own whose array arguments are
marked noalias (no two overlap), which lets LLVM keep accumulators in registers and pack
loops into vectors; the serial build has no such function. A body that needs this in both
builds is written as a @prange_body function, called once per prange iteration: _w4a16_gemv's
serial build took 7.4 ms a call on one thread, its threaded build 1.1 ms, until its loop over
a task's columns became one.
"""
import functools
import types

import numba
from numba.core.compiler import Compiler

GRAIN = 32768  # elements of work below which a loop stays on the calling thread


class ThreadedLoop:
    """kernel(work, *args): the loop on args, threaded when work >= GRAIN elements and
    numba has more than one thread."""

    def __init__(self, fn, flags):
        self.serial = numba.njit(cache=True, **flags)(fn)
        self.threaded = numba.njit(cache=True, parallel=True, **flags)(_twin(fn, "threaded"))
        functools.update_wrapper(self, fn)

    def __call__(self, work, *args):
        build = self.threaded if work >= GRAIN and numba.get_num_threads() > 1 else self.serial
        return build(*args)


def threaded_loop(**flags):
    """@threaded_loop(fastmath=...): a ThreadedLoop of the function, both builds with flags."""
    return lambda fn: ThreadedLoop(fn, flags)


def _twin(fn, suffix):
    """fn under another qualified name. numba names a function's cache files after it and keys
    their entries by signature, not by compile flags: two builds of one function would
    load each other's machine code."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    twin.__qualname__ = f"{fn.__qualname__}_{suffix}"
    return twin


def prange_body(**flags):
    """@prange_body(fastmath=...): numba.njit with the function's array arguments marked
    noalias, as the parfor pass marks a prange body's. Its callers must pass arrays that do
    not overlap where one is written."""
    return lambda fn: numba.njit(cache=True, pipeline_class=_NoAliasCompiler, **flags)(fn)


class _NoAliasCompiler(Compiler):
    """numba's compiler with every pointer argument of the function marked noalias (the
    flag the parfor pass sets on the function it makes of a prange body)."""

    def __init__(self, typingctx, targetctx, library, args, return_type, flags, locals):
        flags = flags.copy()
        flags.noalias = True
        super().__init__(typingctx, targetctx, library, args, return_type, flags, locals)
