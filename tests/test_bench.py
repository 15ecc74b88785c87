"""`llmref bench`: every spec with an accelerated backend declares a benchmark shape, and one
tiny run times every (component, implementation, dtype) -- the reference, each backend
available here, each peer library installed here -- or says why a row was skipped, with the
bytes moved, the fraction of the machine's copy bandwidth and the ratios to the reference
and the peers. The bench formulas are plain arithmetic, never eval(). The implementations of
a row are timed in turns, so a burst of load falls on all of them."""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmref.backends import availability, simulated
from llmref.bench import bench_cases, formula, time_calls
from llmref.errors import InputError
from llmref.spec import all_specs

ROOT = Path(__file__).resolve().parents[1]


def _bench_specs():
    return [s for s in all_specs() if s.bench]


def _dtypes(spec):
    return spec.bench.get("dtypes") or [d for d in spec.dtypes if d != "float64"] or ["float64"]


def _installed(peer, target):
    """Whether a peer runs here: its library (the peer's name) and its adapter module import."""
    if importlib.util.find_spec(peer) is None:
        return False
    try:
        importlib.import_module(target.partition(":")[0])
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "llmref", "bench", "--tiny", "--repeats", "1",
                             "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    seconds = time.perf_counter() - start
    print(f"llmref bench --tiny: {seconds:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), seconds


def test_every_accelerated_spec_has_a_bench_section():
    missing = [s.id for s in all_specs() if s.accel and not s.bench]
    assert missing == []


def test_every_bench_shape_states_its_bytes_and_dtypes():
    for spec in _bench_specs():
        for case in bench_cases(spec, False) + bench_cases(spec, True):
            for dtype in _dtypes(spec):
                names = dict(case.dims, e=2)
                assert formula(spec.bench["bytes"], names) > 0, spec.id
                if spec.bench.get("flops"):
                    assert formula(spec.bench["flops"], names) > 0, spec.id


def test_the_tiny_run_is_quick(tiny_run):
    _, seconds = tiny_run
    assert seconds < 60, f"llmref bench --tiny took {seconds:.0f} s"


def test_the_tiny_run_has_a_row_for_every_implementation(tiny_run):
    document, _ = tiny_run
    assert document["schema"] == "llmref-bench/1" and document["tiny"] is True
    assert document["copy_bandwidth_bytes_per_s"] > 0
    assert document["machine"]["versions"]["numpy"]
    rows = {(r["component"], r["implementation"], r["dtype"], _shape(r)) for r in document["rows"]}
    missing = []
    for spec in _bench_specs():
        for case, dtype in [(c, d) for c in bench_cases(spec, tiny=True) for d in _dtypes(spec)]:
            wanted = ["reference"]
            wanted += [b for b, entry in spec.accel.items() if dtype in entry["dtypes"]]
            wanted += [p for p, target in (spec.bench.get("peers") or {}).items() if _installed(p, target)]
            missing += [(spec.id, name, dtype, case.id) for name in wanted
                        if (spec.id, name, dtype, _shape(case)) not in rows]
    assert missing == []


def _shape(row_or_case):
    """The dims a row was timed at, or a case's, as one comparable text."""
    dims = row_or_case.get("dims") if isinstance(row_or_case, dict) else row_or_case.dims
    return json.dumps(dims, sort_keys=True)


def test_every_row_has_a_time_or_a_reason(tiny_run):
    document, _ = tiny_run
    for r in document["rows"]:
        where = (r["component"], r["implementation"], r["dtype"])
        if "median_s" not in r:
            assert r.get("skipped"), where
            continue
        assert r["median_s"] > 0 and r["p10_s"] <= r["median_s"] <= r["p90_s"], where
        assert r["bytes"] > 0 and r["bytes_per_s"] > 0 and r["of_copy_bandwidth"] > 0, where
        assert r["vs_reference"] > 0, where
        peers = [p for p in document["rows"] if p["component"] == r["component"] and p["dtype"] == r["dtype"]
                 and p["dims"] == r["dims"] and p.get("kind") == "peer" and "median_s" in p]
        for p in peers:
            assert r[f"vs_{p['implementation']}"] > 0, (where, p["implementation"])


def test_the_reference_and_numba_cpu_are_timed_everywhere(tiny_run):
    document, _ = tiny_run
    untimed = [(r["component"], r["implementation"], r["dtype"], r.get("skipped"))
               for r in document["rows"] if r["implementation"] in ("reference", "numba-cpu")
               and "median_s" not in r and availability("numba-cpu")[0]]
    assert untimed == []


def test_peers_run_where_their_library_is_installed(tiny_run):
    document, _ = tiny_run
    peers = [r for r in document["rows"] if r.get("kind") == "peer"]
    assert peers, "no peer rows at all"
    untimed = []
    for r in peers:
        spec = next(s for s in _bench_specs() if s.id == r["component"])
        target = spec.bench["peers"][r["implementation"]]
        if _installed(r["implementation"], target) and "median_s" not in r and "declares dtypes" not in r.get("skipped", ""):
            untimed.append((r["component"], r["implementation"], r["dtype"], r.get("skipped")))
    assert untimed == []


def test_gpu_rows_say_why_they_are_skipped_here(tiny_run):
    document, _ = tiny_run
    for r in document["rows"]:
        if r["implementation"] == "cupy" and not availability("cupy")[0]:
            assert "median_s" not in r and r["skipped"]
        if r["implementation"] == "numba-cuda" and (simulated() or not availability("numba-cuda")[0]):
            assert "median_s" not in r and r["skipped"]


def test_formula_is_arithmetic_over_dims():
    names = {"B": 4, "N": 10, "e": 2}
    assert formula("2 * B * N * e + N // 3 - 1", names) == 2 * 4 * 10 * 2 + 10 // 3 - 1
    assert formula("(B + N) / 2 + 2 ** 3", names) == 15.0
    assert formula("B * N ** 1", {"B": 128256, "N": 4096}) == 128256 * 4096  # fast: no B ** N


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",  # a call
    "B.bit_length()",                   # an attribute
    "[B, N]",                           # a list
    "B if N else e",                    # a conditional
    "B < N",                            # a comparison
    "-B",                               # unary operators are not in the grammar
    "'B' * 3",                          # a string constant
    "True * B",                         # a bool is not a number here
    "B ** 1000",                        # a power that big
])
def test_formula_refuses_anything_else(text):
    with pytest.raises(InputError):
        formula(text, {"B": 4, "N": 10, "e": 2})


def test_formula_refuses_an_unknown_name():
    with pytest.raises(InputError, match="not a dim"):
        formula("2 * B * K", {"B": 4})


def test_the_implementations_of_a_row_are_timed_in_turns_and_one_that_raises_is_named():
    order = []

    def broken_on_third_call():
        order.append("broken")
        if order.count("broken") == 3:
            raise ValueError("no such shape")

    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b"), "broken": broken_on_third_call}
    found = time_calls(calls, warmup=1, repeats=4, min_seconds=0.0, rounds=2)
    timed = [name for name in order[3:] if name != "broken"]  # after the three warm-ups
    assert timed == ["a", "a", "b", "b", "a", "a", "b", "b"]  # two rounds of turns, two runs a turn
    assert found["a"]["runs"] == found["b"]["runs"] == 4
    assert isinstance(found["broken"], ValueError)


def test_a_json_path_with_no_folder_is_refused_before_any_timing(tmp_path):
    target = tmp_path / "missing" / "bench.json"
    result = subprocess.run([sys.executable, "-m", "llmref", "bench", "--component", "relu", "--json", str(target)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode != 0 and "--json" in result.stderr and "Traceback" not in result.stderr


def test_a_reference_that_raises_is_named_and_the_others_still_timed(monkeypatch):
    """The ratios to the reference need its time: without one, its row says why and the run
    goes on (it had ended in a KeyError traceback)."""
    import llmref.bench as bench
    from llmref.spec import load_spec

    real = bench.resolve
    broken_target = load_spec("relu").ref

    def broken(*_, **__):
        raise ValueError("no such shape")

    monkeypatch.setattr(bench, "resolve", lambda target, *a: broken if target == broken_target else real(target, *a))
    rows = bench.run_bench(["relu"], ["numba-cpu"], ["float32"], tiny=True, repeats=1)["rows"]
    reference, numba_cpu = rows[0], rows[1]
    assert reference["implementation"] == "reference" and "ValueError: no such shape" in reference["skipped"]
    assert numba_cpu["median_s"] > 0 and "vs_reference" not in numba_cpu
