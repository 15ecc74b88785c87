"""`llmref model info CONFIG [--json]`: parameter count by part (with and without tying),
weight memory per precision plan beside the seed's rule of thumb, and KV-cache bytes per
token, for a transformers config.json or a bundled published config
(llmref.ref.model_accounting.PUBLISHED_CONFIGS: gemma-7b, llama-2-7b, llama-3-8b,
mistral-7b, mixtral-8x7b, deepseek-v3). Exit codes: 0, or 2 for a bad config."""
import argparse
import json
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmref.errors import InputError
from llmref.ref.model_accounting import PARTS, PUBLISHED_CONFIGS, as_config, kv_cache_bytes, \
    parameter_counts, weight_bytes

CONTEXT = 4096  # tokens, for the KV-cache line "per sequence of 4096 tokens"


def info(config) -> dict:
    """Everything `llmref model info` shows, as plain data (the --json output)."""
    c = as_config(config)
    params = parameter_counts(c)
    out = {"model": config if isinstance(config, str) and config in PUBLISHED_CONFIGS else None,
           "model_type": c.model_type, "parameters": params, "memory": weight_bytes(c)}
    out["kv_cache"] = None if c.family == "bert" else kv_cache_bytes(c)
    return out


def _billions(n) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def _gb(n) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.3f} MB"


def render(data: dict, console: Console):
    p = data["parameters"]
    title = data["model"] or data["model_type"]
    table = Table(title=f"{title}: parameters")
    for col in ("part", "count", "share", "first layer", "last layer"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for part in PARTS:
        n = p["parts"][part]
        if n or part in ("embedding", "head"):
            table.add_row(part, f"{n:,}", f"{n / p['total']:.1%}",
                          f"{p['per_layer']['first'][part]:,}", f"{p['per_layer']['last'][part]:,}")
    table.add_row("total", f"{p['total']:,}", _billions(p["total"]), "", "")
    table.add_row("non-embedding", f"{p['non_embedding']:,}", _billions(p["non_embedding"]), "", "")
    if p["tied"]:
        table.add_row("total if untied", f"{p['total_untied']:,}", _billions(p["total_untied"]),
                      "", "")
    if p["active"] != p["total"]:
        table.add_row("active per token", f"{p['active']:,}", _billions(p["active"]), "", "")
    if p["buffers"]:
        table.add_row("buffers (not counted)", f"{p['buffers']:,}", "", "", "")
    console.print(table)
    memory = Table(title="weight memory")
    for col in ("plan", "Q bits", "exact", "seed estimate M"):
        memory.add_column(col, justify="left" if col == "plan" else "right")
    for row in data["memory"]:
        memory.add_row(row["plan"], str(row["bits"]), _gb(row["bytes"]), _gb(row["estimate"]))
    console.print(memory)
    console.print(Text("exact: packed codes + fp16 scales + packed zero-points per group of 128 for "
                       "the block weights, embeddings, head, router and norms at 16 bits; seed "
                       "estimate: M = P x 4 B x 1.2 / (32 / Q), fp32 bytes scaled to Q bits + 20 %"),
                  soft_wrap=True)
    kv = data["kv_cache"]
    if kv:
        cache = Table(title="KV cache")
        for col in ("kind", "values / token / layer", "bytes / token (16-bit)",
                    f"per {CONTEXT}-token sequence", "without compression"):
            cache.add_column(col, justify="right")
        cache.add_row(kv["kind"], f"{kv['values_per_token_per_layer']:,}",
                      f"{kv['bytes_per_token']:,}", _gb(kv["bytes_per_token"] * CONTEXT),
                      f"{kv['uncompressed_bytes_per_token']:,} B/token")
        console.print(cache)
        if kv["sliding_window"]:
            console.print(Text(f"sliding window {kv['sliding_window']}: a rolling cache holds at "
                               f"most {kv['sliding_window']} tokens per sequence"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="llmref model info", description=__doc__.split("\n")[0])
    parser.add_argument("config", metavar="CONFIG",
                        help=f"a config.json (or its folder), or one of {', '.join(PUBLISHED_CONFIGS)}")
    parser.add_argument("--json", action="store_true", help="print the data as JSON")
    args = parser.parse_args(argv)
    try:
        data = info(args.config)
    except InputError as exc:
        Console(stderr=True, highlight=False, markup=False).print(
            Text(f"error: {exc}", style="red"), soft_wrap=True)
        return 2
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        render(data, Console(highlight=False, markup=False,
                             width=None if sys.stdout.isatty() else 160))
    return 0


if __name__ == "__main__":
    sys.exit(main())
