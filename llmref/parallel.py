"""Spread independent audit tasks over processes, or over a Dask or Ray cluster.

A task is plain data (a dict of strings and numbers: the component, the implementation's
'module:callable' name or backend, the dtype, the case); its result is plain data too
(CaseResult.to_dict / Report.to_dict). Results come back in task order whatever order they
finish in, so a parallel run reports exactly what a serial one does.

Executors:
  process   a pool of `jobs` spawned processes on this machine (the default)
  dask      dask.distributed: the scheduler at $LLMREF_DASK_SCHEDULER, else a LocalCluster of
            `jobs` single-threaded worker processes (pip install 'llmref[dask]')
  ray       ray: the cluster at $RAY_ADDRESS, else a local one with `jobs` CPUs
            (pip install 'llmref[ray]')
"""
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context

EXECUTORS = ("process", "dask", "ray")
# The thread pools a worker starts: numba's (OpenMP or workqueue), BLAS's.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_tasks(fn, tasks: list, jobs: int, executor: str = "process", progress=None) -> list:
    """[fn(task) for task in tasks], computed `jobs` at a time; progress() after each one."""
    if jobs < 1:
        raise ValueError(f"--jobs: must be >= 1, got {jobs}")
    if jobs == 1 and executor == "process":
        results = []
        for task in tasks:
            results.append(fn(task))
            if progress:
                progress()
        return results
    if executor == "process":
        return _processes(fn, tasks, jobs, progress)
    if executor == "dask":
        return _dask(fn, tasks, jobs, progress)
    if executor == "ray":
        return _ray(fn, tasks, jobs, progress)
    raise ValueError(f"--executor: {executor!r} is not one of {EXECUTORS}")


@contextmanager
def _threads_per_worker(jobs):
    """While the pool lives, processes spawned from here start cpu_count // jobs threads per
    pool (a variable the user set is left alone). With more threads than cores, the
    threads that spin waiting for work (OpenMP's, OpenBLAS's) hold cores that others need:
    a warm check with 2 workers on 2 cores took 16 s, against 6 s in one process."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    added = [name for name in THREAD_VARIABLES if name not in os.environ]
    os.environ.update({name: threads for name in added})
    try:
        yield
    finally:
        for name in added:
            del os.environ[name]


def _processes(fn, tasks, jobs, progress):
    results = [None] * len(tasks)
    # spawned, never forked: numba and CUDA may already be initialised in this process
    with _threads_per_worker(jobs), ProcessPoolExecutor(max_workers=jobs,
                                                        mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress:
                progress()
    return results


def _dask(fn, tasks, jobs, progress):
    try:
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError:
        raise ValueError("--executor dask needs dask.distributed (pip install 'llmref[dask]')") from None
    address = os.environ.get("LLMREF_DASK_SCHEDULER")
    cluster = None if address else LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                dashboard_address=None)
    with Client(address or cluster) as client:
        futures = client.map(fn, tasks, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results = [None] * len(tasks)
        for future in dask_completed(futures):
            results[index[future.key]] = future.result()
            if progress:
                progress()
    if cluster is not None:
        cluster.close()
    return results


def _ray(fn, tasks, jobs, progress):
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs ray (pip install 'llmref[ray]')") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=None if os.environ.get("RAY_ADDRESS")
                 else jobs, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(fn)
    pending = {remote.remote(task): i for i, task in enumerate(tasks)}
    results = [None] * len(tasks)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            results[pending.pop(ref)] = ray.get(ref)
            if progress:
                progress()
    if started:
        ray.shutdown()
    return results
