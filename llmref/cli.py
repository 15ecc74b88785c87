"""The `llmref` command. Exit codes: 0 pass, 1 conformance failure, 2 usage or input error."""
import argparse
import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from llmref.audit import audit
from llmref.backends import BACKENDS, availability
from llmref.errors import GoldenError, InputError, SpecError
from llmref.store import generate, verify
from llmref.spec import FLOAT_DTYPES, component_ids, load_spec, resolve

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)
_SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (InputError, SpecError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    except GoldenError as exc:
        err.print(f"[red]golden:[/red] {exc}")
        return 1


def _parser():
    p = argparse.ArgumentParser(prog="llmref", description="Executable specification of LLM components.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="components, cases and backends")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_list)

    s = sub.add_parser("show", help="print one spec")
    s.add_argument("component")
    s.set_defaults(run=cmd_show)

    g = sub.add_parser("golden", help="generate or verify golden vectors").add_subparsers(
        required=True, metavar="ACTION")
    s = g.add_parser("generate", help="regenerate goldens from the specs and the reference")
    s.add_argument("--component", action="append", help="only this component (repeatable)")
    s.add_argument("--out", help="write into this folder instead of the shipped golden/")
    s.set_defaults(run=cmd_generate)
    s = g.add_parser("verify", help="check every golden file against MANIFEST.json")
    s.add_argument("--component", action="append")
    s.add_argument("--root", help="verify this folder instead of the shipped golden/")
    s.set_defaults(run=cmd_verify)

    s = sub.add_parser("check", help="run accelerated backends against the goldens")
    s.add_argument("--backend", action="append", choices=BACKENDS)
    s.add_argument("--component", action="append")
    s.add_argument("--dtype", action="append", choices=FLOAT_DTYPES)
    s.add_argument("--case", action="append")
    s.add_argument("--tier", choices=("smoke", "full"), default="smoke")
    s.add_argument("--json", action="store_true")
    s.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    s.set_defaults(run=cmd_check)

    s = sub.add_parser("audit", help="judge an implementation MODULE:CALLABLE")
    s.add_argument("component")
    s.add_argument("target", metavar="MODULE:CALLABLE")
    s.add_argument("--case", action="append")
    s.add_argument("--dtype", choices=FLOAT_DTYPES)
    s.add_argument("--tier", choices=("smoke", "full"), default="smoke")
    s.add_argument("--json", action="store_true")
    s.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    s.set_defaults(run=cmd_audit)

    s = sub.add_parser("selftest", help="prove each spec's wrong variants are rejected")
    s.add_argument("--component", action="append")
    s.set_defaults(run=cmd_selftest)
    return p


def _components(names):
    known = component_ids()
    for name in names or []:
        if name not in known:
            raise InputError(f"--component: unknown component {name!r} (known: {', '.join(known)})")
    return names or known


def cmd_list(args):
    specs = [load_spec(c) for c in component_ids()]
    backends = {b: availability(b) for b in BACKENDS}
    if args.json:
        print(json.dumps({
            "components": [{"id": s.id, "version": s.version, "summary": s.summary,
                            "cases": [{"id": c.id, "tier": c.tier} for c in s.cases],
                            "dtypes": list(s.dtypes), "backends": sorted(s.accel)} for s in specs],
            "backends": {b: {"available": ok, "note": note} for b, (ok, note) in backends.items()},
        }, indent=1))
        return 0
    problems = {p[0].split("/")[0] for p in verify(component_ids())}
    table = Table(title="llmref components")
    for col in ("component", "v", "cases (smoke/full)", "goldens", "dtypes", "backends", "summary"):
        table.add_column(col)
    for s in specs:
        smoke = sum(c.tier == "smoke" for c in s.cases)
        table.add_row(s.id, str(s.version), f"{smoke}/{len(s.cases) - smoke}",
                      "[red]problem[/red]" if s.id in problems else "ok",
                      ",".join(_SHORT[d] for d in s.dtypes), ", ".join(sorted(s.accel)), s.summary)
    out.print(table)
    for b, (ok, note) in backends.items():
        out.print(f"backend {b}: " + ("[green]available[/green]" if ok else "[yellow]unavailable[/yellow]")
                  + f" ({escape(note)})")
    return 0


def cmd_show(args):
    spec = load_spec(_components([args.component])[0])
    out.print(f"[bold]{spec.id}[/bold] v{spec.version}: {spec.summary}\n")
    out.print(spec.definition.rstrip() + "\n")
    for title, items in (("Conventions", spec.conventions), ("References", spec.references)):
        out.print(f"[bold]{title}[/bold]")
        for item in items:
            out.print(f"  - {item}")
    out.print(f"[bold]Reference[/bold] {spec.ref}")
    for b, entry in spec.accel.items():
        out.print(f"[bold]{b}[/bold] {entry['impl']} ({', '.join(entry['dtypes'])})")
    for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for t in tensors:
            out.print(f"  {kind} {t.name}: {t.dtype}{list(t.shape)} {t.doc}")
    for name, p in spec.params.items():
        out.print(f"  param {name}: {p['type']} = {p['default']!r} {p['doc']}")
    tol = spec.tolerance
    out.print(f"[bold]Tolerance[/bold] {tol['ulps']} ulps"
              + (f" x sqrt({tol['reduction']})" if tol.get("reduction") else "") + f": {tol['reason']}")
    out.print("[bold]Cases[/bold]")
    for c in spec.cases:
        out.print(f"  {c.id} [{c.tier}] {c.dims or ''} {c.params} {c.note}")
    out.print("[bold]Wrong variants[/bold]")
    for v in spec.wrong_variants:
        out.print(f"  {v.id} (at {v.dtype}): {v.description}")
    return 0


def cmd_generate(args):
    written = generate(_components(args.component), args.out)
    out.print(f"wrote {len(written)} golden files")
    return 0


def cmd_verify(args):
    problems = verify(_components(args.component), args.root)
    for rel, reason in problems:
        out.print(f"[red]FAIL[/red] {rel}: {reason}")
    if problems:
        return 1
    out.print("all goldens match MANIFEST.json")
    return 0


def cmd_check(args):
    from llmref.check import run_check

    components = _components(args.component)
    cells = []
    with Progress(console=err, transient=True, disable=args.json or not err.is_terminal) as bar:
        task = bar.add_task("checking", total=None)

        def progress(component, backend, dtype):
            bar.update(task, description=f"{component} / {backend} / {dtype}")

        for cell in run_check(components, args.backend, args.dtype, args.case, args.tier, progress):
            cells.append(cell)
    failed = [c for c in cells if c.status == "fail"]
    _write_junit(args.junit, [c.report for c in cells if c.report])
    if args.json:
        print(json.dumps([{"component": c.component, "backend": c.backend, "dtype": c.dtype,
                           "status": c.status, "note": c.note,
                           "report": c.report.to_dict() if c.report else None} for c in cells],
                         indent=1))
        return 1 if failed else 0
    _print_matrix(cells, args.backend or BACKENDS)
    for cell in failed:
        _print_failures(cell.report, f"{cell.component} / {cell.backend} / {cell.dtype}")
    ran = [c for c in cells if c.report]
    out.print(f"{len(ran) - len(failed)} of {len(ran)} component x backend x dtype cells passed")
    return 1 if failed else 0


def _print_matrix(cells, backends):
    table = Table(title="llmref check: component x backend x dtype (passed/cases)")
    table.add_column("component")
    rows, unavailable = {}, {}
    for c in cells:
        rows.setdefault(c.component, {}).setdefault(c.backend, []).append(c)
        if c.status == "unavailable":
            unavailable[c.backend] = c.note
    for b in backends:
        why = f"\n[yellow]unavailable: {escape(unavailable[b])}[/yellow]" if b in unavailable else ""
        table.add_column(b + why)
    for component, by_backend in rows.items():
        row = [component]
        for b in backends:
            parts = []
            for c in by_backend.get(b, []):
                if c.status == "unavailable":
                    parts.append("[yellow]unavailable[/yellow]")
                elif c.status == "absent":
                    parts.append("[dim]-[/dim]")
                else:
                    color = "green" if c.status == "pass" else "red"
                    parts.append(f"[{color}]{_SHORT[c.dtype]} {c.note}[/{color}]")
            row.append(" ".join(parts))
        table.add_row(*row)
    out.print(table)
    out.print("- = no implementation of that component for that backend")


def _print_failures(report, title):
    for r in report.failures():
        out.print(f"[red]{r.outcome.value}[/red] {title} case {r.case}: {r.detail}")
        for c in r.comparisons:
            if c.metrics and c.outcome.value != "PASSED":
                m = c.metrics
                out.print(f"    {c.output}: max_abs={m.get('max_abs_err', 0):.3g} "
                          f"max_rel={m.get('max_rel_err', 0):.3g} nmse={m.get('nmse', 0):.3g} "
                          f"cosine={m.get('cosine', 1):.9f} worst={m.get('worst_index')}")
        out.print(f"    reproduce: {r.repro}")


def cmd_audit(args):
    sys.path.insert(0, "")
    try:
        fn = resolve(args.target)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InputError(f"MODULE:CALLABLE: cannot load {args.target!r} ({exc})") from None
    report = audit(args.component, fn, cases=args.case, dtype=args.dtype, tier=args.tier,
                   label=args.target)
    _write_junit(args.junit, [report])
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0 if report.passed else 1
    table = Table(title=f"audit {report.component} {report.implementation} at {report.dtype}")
    for col in ("case", "outcome", "max abs err", "nmse", "cosine"):
        table.add_column(col)
    for r in report.results:
        m = next((c.metrics for c in r.comparisons if c.metrics.get("nmse") is not None), {})
        color = "green" if r.outcome.value == "PASSED" else "red"
        table.add_row(r.case, f"[{color}]{r.outcome.value}[/{color}]",
                      f"{m['max_abs_err']:.3g}" if m else "", f"{m['nmse']:.3g}" if m else "",
                      f"{m['cosine']:.9f}" if m else "")
    out.print(table)
    _print_failures(report, f"{report.component} / {report.implementation} / {report.dtype}")
    out.print("[green]PASSED[/green]" if report.passed else "[red]FAILED[/red]")
    return 0 if report.passed else 1


def _write_junit(path, reports):
    if path:
        from llmref.report import junit_xml

        with open(path, "w", encoding="utf-8") as handle:
            handle.write(junit_xml(reports))


def cmd_selftest(args):
    from llmref.selftest import run_selftest

    bad = 0
    for spec, variant, report, caught in run_selftest(_components(args.component)):
        mark = "[green]rejected[/green]" if caught else "[red]NOT REJECTED[/red]"
        outcomes = ", ".join(f"{k}={v}" for k, v in report.counts().items())
        out.print(f"{spec.id} / {variant.id} at {variant.dtype}: {mark} ({outcomes})")
        bad += not caught
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
