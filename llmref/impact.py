"""Downstream impact of a component implementation (`llmref audit COMPONENT IMPL --impact`):
swap it into the tiny fixed-weight models the model specs define and measure how far the
model's output moves, so an error that passes or fails a component's tolerance can be read
in terms of what a model does with it.

For each model spec whose forward calls the component (model_decoder, model_moe,
model_encoder) and each of its smoke cases, the case's weights and tokens (rounded to `dtype`)
are run twice at `dtype`: with every component the reference, and with the component under
audit in its place (llmref.ref.model.Components). The prompt set is the cases' token
sequences, every position scored:

  decoder  kl_mean / kl_max   KL(p_ref || p_impl) per position, p = softmax(logits), in nats
           flip_rate          fraction of positions whose top-1 token differs
  encoder  pooled_cosine_min  least cosine between the reference's and the swapped model's
                              mean-pooled embeddings (no next-token distribution there)
  both     max_rel_error      max |out - ref| / max |ref| of the logits or hidden states

The implementation runs in this process (a 'module:callable' name is imported here), called
with the component spec's keyword arguments and arrays in `dtype`, exactly as under audit.
"""
import json

import numpy as np

from llmref.cases import make_inputs
from llmref.dtypes import round_to
from llmref.errors import InputError
from llmref.ref.model import Components, decoder_forward, encoder_forward, load_config, \
    mean_pool
from llmref.ref.model_config import unflatten
from llmref.spec import component_ids, load_spec, resolve

MODEL_SPECS = ("model_decoder", "model_moe", "model_encoder")
DTYPES = ("float64", "float32")


class _Recorder(Components):
    """Reference components that note which of them a forward calls."""

    def __init__(self):
        super().__init__()
        self.called = set()

    def __getattr__(self, component):
        if not component.startswith("__"):
            self.__dict__.setdefault("called", set()).add(component)
        return super().__getattr__(component)


def _cases(spec_id, dtype):
    """(case id, config, weights, model inputs) of a model spec's smoke cases at dtype."""
    spec = load_spec(spec_id)
    for case in (c for c in spec.cases if c.tier == "smoke"):
        inputs = make_inputs(spec, case)
        config = load_config(json.loads(case.params["config"]))
        weights = unflatten(config, round_to(inputs["weights"], dtype))
        yield case.id, config, weights, inputs


def _run(spec_id, config, weights, inputs, ops):
    if spec_id == "model_encoder":
        h = encoder_forward(config, weights, inputs["ids"], inputs["token_type_ids"],
                            inputs["attention_mask"], ops)
        return h, mean_pool(h, inputs["attention_mask"])
    ids = np.concatenate([inputs["prompt"], inputs["continuation"]], axis=1)
    return decoder_forward(config, weights, ids, ops), None


def models_using(component):
    """The model specs whose forward calls `component` (found by running them)."""
    using = []
    for spec_id in MODEL_SPECS:
        recorder = _Recorder()
        for _, config, weights, inputs in _cases(spec_id, "float64"):
            _run(spec_id, config, weights, inputs, recorder)
        if component in recorder.called:
            using.append(spec_id)
    return using


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def impact(component, implementation, dtype="float32", specs=None) -> dict:
    """{component, implementation, dtype, models: [per (spec, case) metrics], kl_mean,
    kl_max, flip_rate, positions, pooled_cosine_min} (see the module docstring); the summary
    values pool every decoder position (None when no decoder model uses the component)."""
    if component not in component_ids():
        raise InputError(f"component: {component!r} is not a shipped spec")
    if dtype not in DTYPES:
        raise InputError(f"dtype: the model specs run at {DTYPES}, not {dtype!r}")
    name = implementation if isinstance(implementation, str) else \
        f"{getattr(implementation, '__module__', '?')}:{getattr(implementation, '__qualname__', '?')}"
    fn = resolve(implementation, "implementation") if isinstance(implementation, str) else implementation
    if not callable(fn):
        raise InputError(f"implementation: {name} is not callable")
    specs = list(specs) if specs else models_using(component)
    if not specs:
        raise InputError(f"component: no model spec's forward calls {component!r} "
                         f"(the model components: embedding, lm_head, rmsnorm, rope, sdpa, "
                         f"swiglu, geglu, moe_layer, mla, layernorm, gelu, learned_positions)")
    reference_ops, swapped = Components(), Components({component: fn})
    models, kls, flips, cosines = [], [], [], []
    for spec_id in specs:
        for case_id, config, weights, inputs in _cases(spec_id, dtype):
            ref_out, ref_pooled = _run(spec_id, config, weights, inputs, reference_ops)
            out, pooled = _run(spec_id, config, weights, inputs, swapped)
            ref_out, out = np.asarray(ref_out, np.float64), np.asarray(out, np.float64)
            row = {"spec": spec_id, "case": case_id, "positions": int(np.prod(ref_out.shape[:-1])),
                   "max_rel_error": float(np.abs(out - ref_out).max() / np.abs(ref_out).max())}
            if spec_id == "model_encoder":
                a, b = np.asarray(pooled, np.float64), np.asarray(ref_pooled, np.float64)
                cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
                row["pooled_cosine_min"] = float(cos.min())
                cosines.append(row["pooled_cosine_min"])
            else:
                p, q = _softmax(ref_out), _softmax(out)
                with np.errstate(divide="ignore", invalid="ignore"):
                    kl = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0).sum(-1)  # (B, L)
                flipped = ref_out.argmax(-1) != out.argmax(-1)
                row.update(kl_mean=float(kl.mean()), kl_max=float(kl.max()),
                           flip_rate=float(flipped.mean()), flips=int(flipped.sum()))
                kls.append(kl.reshape(-1))
                flips.append(flipped.reshape(-1))
            models.append(row)
    pooled_kl = np.concatenate(kls) if kls else None
    pooled_flips = np.concatenate(flips) if flips else None
    return {"component": component, "implementation": name, "dtype": dtype, "models": models,
            "positions": int(pooled_kl.size) if kls else 0,
            "kl_mean": float(pooled_kl.mean()) if kls else None,
            "kl_max": float(pooled_kl.max()) if kls else None,
            "flip_rate": float(pooled_flips.mean()) if flips else None,
            "pooled_cosine_min": min(cosines) if cosines else None}


def render(data: dict, console):
    """The impact report as a rich table (one row per model case, then the pooled line)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"impact of {data['implementation']} as {data['component']} at "
                             f"{data['dtype']} on the model specs' tiny models"))
    for col in ("model", "case", "positions", "KL mean", "KL max", "top-1 flips",
                "pooled cosine", "max rel error"):
        table.add_column(col, justify="left" if col in ("model", "case") else "right")

    def num(value, fmt=".3g"):
        return "" if value is None else format(value, fmt)

    for m in data["models"]:
        flips = f"{m['flips']}/{m['positions']}" if "flips" in m else ""
        table.add_row(m["spec"], m["case"], str(m["positions"]), num(m.get("kl_mean")),
                      num(m.get("kl_max")), flips, num(m.get("pooled_cosine_min"), ".9f"),
                      num(m["max_rel_error"]))
    if data["kl_mean"] is not None:
        table.add_row("all decoders", "", str(data["positions"]), num(data["kl_mean"]),
                      num(data["kl_max"]), f"{data['flip_rate']:.1%}", "", "")
    console.print(table)
