"""The shipped example adapters (llmref.examples): the libraries people use, each audited by
llmref exactly as any implementation, at every dtype it declares, must pass; a deliberately
broken copy of one adapter per library must fail the same audit, so no adapter passes by luck;
every declared skip must name a case the library really does not pass; and no example
contains reference code."""
import ast
import dataclasses
import functools
import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest

import llmref
from llmref.adapters import declaration
from llmref.compare import Outcome

pytestmark = [
    pytest.mark.crosscheck,
    # libraries' own noise: torch's deprecated quantized tensors and unfused mixed-dtype
    # rms_norm, NumPy warnings inside the ONNX reference evaluator on -inf rows
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
    pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight:UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

EXAMPLES = Path(llmref.__file__).parent / "examples"

# module -> the libraries it needs (importorskip, in order)
NEEDS = {
    "torch_ops": ["torch"],
    "transformers_ops": ["torch", "transformers"],
    "jax_ops": ["jax"],
    "onnx_ops": ["onnx"],
    "onnxruntime_ops": ["onnx", "onnxruntime"],
    "tiktoken_ops": ["tiktoken"],
    "tokenizers_ops": ["tokenizers", "transformers", "tiktoken"],  # transformers' converter
    "gguf_ops": ["gguf"],
    "bitsandbytes_ops": ["torch", "bitsandbytes"],
}
# adapters that need more than their module: ONNX's RotaryEmbedding takes its tables from
# transformers' rotary-embedding modules
ALSO_NEEDS = {("onnx_ops", "rope"): ["torch", "transformers"],
              ("onnxruntime_ops", "rope"): ["torch", "transformers"]}

# (module, adapter, component): every shipped adapter
ADAPTERS = [
    ("torch_ops", "sdpa", "sdpa"),
    ("torch_ops", "softmax", "softmax"),
    ("torch_ops", "log_softmax", "log_softmax"),
    ("torch_ops", "layernorm", "layernorm"),
    ("torch_ops", "rmsnorm", "rmsnorm"),
    ("torch_ops", "gelu", "gelu"),
    ("torch_ops", "gelu_tanh", "gelu_tanh"),
    ("torch_ops", "silu", "silu"),
    ("torch_ops", "relu", "relu"),
    ("torch_ops", "glu", "glu"),
    ("torch_ops", "geglu", "geglu"),
    ("torch_ops", "swiglu", "swiglu"),
    ("torch_ops", "kd_loss", "kd_loss"),
    ("torch_ops", "quantize_linear", "quantize_linear"),
    ("torch_ops", "quantize_linear_fbgemm", "quantize_linear"),
    ("torch_ops", "fake_quant", "fake_quant"),
    ("torch_ops", "fake_quant_per_channel", "fake_quant"),
    ("torch_ops", "w8a8_matmul", "w8a8_matmul"),
    ("torch_ops", "embedding", "embedding"),
    ("torch_ops", "lm_head", "lm_head"),
    ("torch_ops", "paged_attention_decode", "paged_attention_decode"),
    ("torch_ops", "moe_layer", "moe_layer"),
    ("transformers_ops", "rope", "rope"),
    ("transformers_ops", "sample_tokens", "sample_tokens"),
    ("transformers_ops", "gelu", "gelu"),
    ("transformers_ops", "gelu_tanh", "gelu_tanh"),
    ("transformers_ops", "gelu_new", "gelu_tanh"),
    ("transformers_ops", "gelu_fast", "gelu_tanh"),
    ("transformers_ops", "silu", "silu"),
    ("transformers_ops", "relu", "relu"),
    ("transformers_ops", "swiglu", "swiglu"),
    ("transformers_ops", "geglu", "geglu"),
    ("jax_ops", "softmax", "softmax"),
    ("jax_ops", "sdpa", "sdpa"),
    ("onnx_ops", "softmax", "softmax"),
    ("onnx_ops", "log_softmax", "log_softmax"),
    ("onnx_ops", "layernorm", "layernorm"),
    ("onnx_ops", "rmsnorm", "rmsnorm"),
    ("onnx_ops", "rope", "rope"),
    ("onnx_ops", "sdpa", "sdpa"),
    ("onnxruntime_ops", "softmax", "softmax"),
    ("onnxruntime_ops", "log_softmax", "log_softmax"),
    ("onnxruntime_ops", "layernorm", "layernorm"),
    ("onnxruntime_ops", "rmsnorm", "rmsnorm"),
    ("onnxruntime_ops", "rope", "rope"),
    ("onnxruntime_ops", "sdpa", "sdpa"),
    ("onnxruntime_ops", "w4a16_matmul", "w4a16_matmul"),
    ("onnxruntime_ops", "w4a16_matmul_prepacked", "w4a16_matmul"),
    ("tiktoken_ops", "bpe_encode", "bpe_encode"),
    ("tiktoken_ops", "bpe_encode_prepared", "bpe_encode"),
    ("tokenizers_ops", "bpe_encode", "bpe_encode"),
    ("gguf_ops", "gguf_quantize", "gguf_quantize"),
    ("bitsandbytes_ops", "nf4_quantize", "nf4_quantize"),
]

# Adapters of a library that is itself wrong on every case: audited, and required to fail in
# exactly the documented way, so a fixed library (or a broken adapter) is noticed.
LIBRARY_BUGS = [
    # bitsandbytes backends/default/ops.py int8_mm_dequant multiplies by 6.200124e-05 for
    # 1/127^2 = 6.2000124e-05 (the CUDA kernel's MM_DEQUANT_CONST is 6.200012e-05f): y is
    # 1.8e-5 too large; the int32 accumulator is exact
    ("bitsandbytes_ops", "w8a8_matmul", "w8a8_matmul", "float32", "y", 1.8e-5),
]


def example(module, adapter=None):
    """The example module, after importorskip of every library it (or the adapter) needs."""
    for name in NEEDS[module] + ALSO_NEEDS.get((module, adapter), []):
        pytest.importorskip(name, reason=f"llmref.examples.{module} needs {name} (crosscheck extra)")
    return importlib.import_module(f"llmref.examples.{module}")


def declared_dtypes(fn, component):
    return list(declaration(fn).dtypes or llmref.load_spec(component).dtypes)


def outcomes(report):
    return {r.case: (r.outcome.value, r.detail[:300]) for r in report.results
            if r.outcome not in (Outcome.PASSED, Outcome.UNSUPPORTED)}


@pytest.mark.parametrize("module, name, component", ADAPTERS,
                         ids=[f"{m.removesuffix('_ops')}-{n}" for m, n, _ in ADAPTERS])
def test_example_passes_its_audit_at_every_declared_dtype(module, name, component):
    fn = getattr(example(module, name), name)
    failed = {}
    for dtype in declared_dtypes(fn, component):
        report = llmref.audit(component, fn, dtype=dtype)
        if not report.passed:
            failed[dtype] = outcomes(report) or report.counts()
    assert not failed, failed


def without_declared_skips(fn):
    """The same adapter with its declared dtypes but no skipped or restricted cases."""
    @functools.wraps(fn)
    def run(**kwargs):
        return fn(**kwargs)

    run.__llmref__ = dataclasses.replace(declaration(fn), skip={}, cases=())
    return run


@pytest.mark.parametrize("module, name, component", ADAPTERS,
                         ids=[f"{m.removesuffix('_ops')}-{n}" for m, n, _ in ADAPTERS])
def test_every_declared_skip_names_a_case_the_library_does_not_pass(module, name, component):
    fn = getattr(example(module, name), name)
    skip = declaration(fn).skip
    if not skip:
        pytest.skip("declares no skipped case")
    passing = set(skip)  # skipped cases not yet seen to fail at some declared dtype
    for dtype in declared_dtypes(fn, component):
        report = llmref.audit(component, without_declared_skips(fn), dtype=dtype,
                              cases=sorted(passing))
        passing = {r.case for r in report.results if r.outcome is Outcome.PASSED}
        if not passing:
            break
    assert not passing, f"declared unsupported but passing at every declared dtype: {passing}"


@pytest.mark.parametrize("module, name, component, dtype, output, relative", LIBRARY_BUGS)
def test_a_library_bug_fails_exactly_as_documented(module, name, component, dtype, output, relative):
    fn = getattr(example(module, name), name)
    report = llmref.audit(component, fn, dtype=dtype)
    assert report.results and all(r.outcome is Outcome.NUMERICAL_MISMATCH for r in report.results)
    for result in report.results:
        wrong = {c.output: c for c in result.comparisons if c.outcome is not Outcome.PASSED}
        assert list(wrong) == [output], result.detail
        assert wrong[output].metrics["max_rel_err"] == pytest.approx(relative, rel=0.05)


# --- broken copies: one per library, each must fail ----------------------------------------

def broken_torch():
    example("torch_ops")
    import torch.nn.functional as F

    from llmref.adapters import torch_adapter
    from llmref.examples.torch_ops import sdpa_mask

    @torch_adapter
    def sdpa(q, k, v, key_padding_mask, causal, window, scale):  # scale passed as given: 0
        mask = sdpa_mask(key_padding_mask, q.shape[2], causal, window)   # would mean 1/sqrt(D)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0,
                                              enable_gqa=q.shape[1] != k.shape[1])

    return "sdpa", sdpa, "float32"


def broken_transformers():
    ops = example("transformers_ops", "rope")

    def rope(**kwargs):  # the other pairing: rotate-half where interleaved is asked for
        return ops.rope(**{**kwargs, "interleaved": not kwargs["interleaved"]})

    rope.__signature__ = inspect.signature(ops.rope)
    rope.__llmref__ = declaration(ops.rope)
    return "rope", rope, "float32"


def broken_jax():
    ops = example("jax_ops")
    import jax

    from llmref.adapters import jax_adapter

    @ops.x64
    @jax_adapter
    def softmax(x, axis):  # the logits doubled (a temperature of 0.5 applied by mistake)
        return jax.nn.softmax(x + x, axis=axis)

    return "softmax", softmax, "float32"


def broken_onnx():
    ops = example("onnx_ops")
    from onnx import TensorProto, helper

    @llmref.adapters.declare
    def sdpa(q, k, v, key_padding_mask, causal, window, scale):  # ONNX's own is_causal:
        mask = ops.sdpa_mask(key_padding_mask, q.shape[2], False, window)  # top-left aligned
        node = helper.make_node("Attention", ["q", "k", "v", "mask"], ["out"], is_causal=int(causal),
                                **({"scale": float(scale)} if scale else {}))
        t = ops.elem(q)
        m = ops.model([node], [("q", t), ("k", t), ("v", t), ("mask", TensorProto.BOOL)],
                      [("out", t)], 23)
        return ops.reference_run(m, {"q": q, "k": k, "v": v, "mask": mask})[0]

    return "sdpa", sdpa, "float32"


def broken_onnxruntime():
    ops = example("onnxruntime_ops")

    @llmref.adapters.declare
    def w4a16_matmul(x, w_packed, scales, zeros, group_size):  # nibbles swapped in B
        swapped = ((w_packed << 4) | (w_packed >> 4)).astype(np.uint8)
        return ops.w4a16_matmul(x=x, w_packed=swapped, scales=scales, zeros=zeros,
                                group_size=group_size)

    return "w4a16_matmul", w4a16_matmul, "float32"


def broken_tiktoken():
    ops = example("tiktoken_ops")

    @llmref.adapters.declare
    def bpe_encode(text, merges, pattern, special_tokens, allowed_special, disallowed_special):
        return ops.bpe_encode(text=text, merges=merges, pattern="gpt2",  # whatever is asked
                              special_tokens=special_tokens, allowed_special=allowed_special,
                              disallowed_special=disallowed_special)

    return "bpe_encode", bpe_encode, "float64"


def broken_tokenizers():
    ops = example("tokenizers_ops")

    @llmref.adapters.declare
    def bpe_encode(text, merges, pattern, special_tokens, allowed_special, disallowed_special):
        return ops.bpe_encode(text=text, merges=merges, pattern=pattern,  # every special allowed
                              special_tokens=special_tokens, allowed_special=list(special_tokens),
                              disallowed_special=[])

    return "bpe_encode", bpe_encode, "float64"


def broken_gguf():
    ops = example("gguf_ops")

    @llmref.adapters.declare
    def gguf_quantize(x, fmt):  # the weights through float16 before quantizing
        blocks, x_hat = ops.gguf_quantize(x=x.astype(np.float16), fmt=fmt)
        return blocks, x_hat.astype(x.dtype)

    return "gguf_quantize", gguf_quantize, "float32"


def broken_bitsandbytes():
    ops = example("bitsandbytes_ops")

    @llmref.adapters.declare(dtypes=["float32"])
    def nf4_quantize(x, block_size):  # first element of a pair in the low nibble
        packed, absmax, x_hat = ops.nf4_quantize(x=x, block_size=block_size)
        return ((packed << 4) | (packed >> 4)).astype(np.uint8), absmax, x_hat

    return "nf4_quantize", nf4_quantize, "float32"


# failures the comparison decides (a broken copy that merely raises would prove nothing)
JUDGED_FAILURES = (Outcome.NUMERICAL_MISMATCH, Outcome.SHAPE_MISMATCH, Outcome.NAN_INF_MISMATCH,
                   Outcome.ERROR_EXPECTED)

BROKEN = [broken_torch, broken_transformers, broken_jax, broken_onnx, broken_onnxruntime,
          broken_tiktoken, broken_tokenizers, broken_gguf, broken_bitsandbytes]


@pytest.mark.parametrize("make", BROKEN, ids=[b.__name__ for b in BROKEN])
def test_a_broken_copy_of_an_example_fails_the_same_audit(make):
    component, fn, dtype = make()
    report = llmref.audit(component, fn, dtype=dtype)
    assert not report.passed, report.counts()
    judged = {r.case for r in report.results if r.outcome in JUDGED_FAILURES}
    assert judged, f"no case failed on its outputs: {outcomes(report)}"


# --- the examples hold no reference code ----------------------------------------------------

def imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_no_example_imports_the_reference_or_the_kernels():
    files = sorted(EXAMPLES.glob("*.py"))
    assert {f.stem for f in files} >= set(NEEDS) | {"__init__"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "llmref.ref" not in text and "llmref.accel" not in text, path.name
        for name in imported_modules(path):
            assert not name.startswith(("llmref.ref", "llmref.accel")), (path.name, name)
            assert name not in ("llmref.ref", "llmref.accel"), (path.name, name)


ADAPTER_DECORATORS = {"torch_adapter", "jax_adapter", "declare", "x64"}


def decorator_names(function):
    for d in function.decorator_list:
        d = d.func if isinstance(d, ast.Call) else d
        yield d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")


def test_every_example_adapter_is_audited_here():
    for module in NEEDS:
        path = EXAMPLES / f"{module}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        public = {n.targets[0].id for n in tree.body if isinstance(n, ast.Assign)
                  and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Call)
                  and getattr(n.value.func, "id", "").startswith("act2fn")}
        public |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                   and ADAPTER_DECORATORS & set(decorator_names(n))}
        audited = {n for m, n, _ in ADAPTERS if m == module} | {
            n for m, n, *_ in LIBRARY_BUGS if m == module}
        assert public == audited, (module, public ^ audited)
