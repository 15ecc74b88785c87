"""The `llmref` command. Exit codes: 0 pass, 1 conformance failure (or a damaged or stale
golden), 2 usage or input error.

Every text that comes from a spec, an implementation, an exception or a file is printed
as plain text (rich `Text`), never interpreted as markup.
"""
import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from llmref import fuzz
from llmref.audit import audit
from llmref.backends import BACKENDS, availability
from llmref.dtypes import FLOAT_DTYPES, SHORT
from llmref.errors import GoldenError, InputError, SpecError
from llmref.spec import component_ids, load_spec, parse_spec_file, resolve
from llmref.store import generate, verify
from llmref.worker import DEFAULT_TIMEOUT

out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, markup=False)


def say(text, style=None, console=out):
    """One line of plain text: no markup, and never wrapped (a message stays greppable)."""
    console.print(Text(str(text), style=style or ""), soft_wrap=True)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (InputError, SpecError) as exc:
        say(f"error: {exc}", "red", err)
        return 2
    except GoldenError as exc:
        say(f"golden: {exc}", "red", err)
        return 1
    except BrokenPipeError:  # the reader of our output went away (| head): not an error of ours
        sys.stderr.close()
        return 0


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
    s = g.add_parser("pack", help="write a self-describing zip of goldens and specs for any language")
    s.add_argument("out", metavar="OUT", help="the zip file to write")
    s.add_argument("--component", action="append")
    s.set_defaults(run=cmd_pack)
    s = g.add_parser("verify", help="check every golden file against MANIFEST.json")
    s.add_argument("--component", action="append")
    s.add_argument("--root", help="verify this folder instead of the shipped golden/")
    s.add_argument("--deep", action="store_true",
                   help="also recompute every golden from the reference and compare")
    s.set_defaults(run=cmd_verify)

    s = sub.add_parser("check", help="run accelerated backends against the goldens")
    s.add_argument("--backend", action="append", choices=BACKENDS)
    s.add_argument("--component", action="append")
    s.add_argument("--dtype", action="append", choices=FLOAT_DTYPES)
    s.add_argument("--case", action="append")
    s.add_argument("--tier", choices=("smoke", "full"), default="smoke")
    _parallel_options(s, "run N cells at a time (default: one process per core, at most 8, for a "
                         "check of several components; 1 for one component)")
    _report_options(s)
    s.set_defaults(run=cmd_check)

    s = sub.add_parser("audit", help="judge an implementation MODULE:CALLABLE")
    s.add_argument("component", help="a shipped component (see `llmref list`)")
    s.add_argument("target", metavar="MODULE:CALLABLE", nargs="?",
                   help="the implementation (or give --exec)")
    s.add_argument("--exec", dest="command", metavar="CMD",
                   help="audit a program instead: run CMD once per case, exchanging safetensors "
                        "files (protocol: specs/FORMAT.md)")
    s.add_argument("--spec", metavar="FILE", help="audit against this spec file instead of a "
                   "shipped one (its cases are computed live by the reference it names)")
    s.add_argument("--case", action="append")
    s.add_argument("--dtype", choices=FLOAT_DTYPES)
    s.add_argument("--tier", choices=("smoke", "full"), default="smoke")
    s.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds per case before TIMEOUT (default {DEFAULT_TIMEOUT:g})")
    s.add_argument("--in-process", action="store_true",
                   help="run the implementation in this process (debugging: no isolation)")
    s.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                   help="do not run the spec's wrong variants on failing cases")
    s.add_argument("--invariants", action="store_true", help="also check the spec's invariants "
                   "(no golden needed: determinism, batch independence, block layout...) in this process")
    s.add_argument("--fit", action="store_true", help="judge a sampler that draws its own random "
                   "numbers: support and a binomial fit per token (the spec's fit section)")
    s.add_argument("--draws", type=int, default=20_000, help="--fit: draws per case (default 20000)")
    s.add_argument("--alpha", type=float, default=1e-6,
                   help="--fit: false-alarm probability per case (default 1e-6)")
    s.add_argument("--impact", action="store_true", help="also swap the implementation into the tiny "
                   "models that use this component and report the logit KL and top-1 flip rate")
    _parallel_options(s)
    _report_options(s)
    s.set_defaults(run=cmd_audit)

    s = sub.add_parser("selftest", help="prove wrong variants and trivial mutants are rejected")
    s.add_argument("--component", action="append")
    s.add_argument("--dtype", action="append", choices=FLOAT_DTYPES)
    s.add_argument("--tier", choices=("smoke", "full"), default="smoke")
    s.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the JSON report with the kill matrix (schema llmref-selftest/1)")
    s.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    s.add_argument("--matrix", metavar="FILE", help="write the kill matrix as JSON: per component, "
                   "for each wrong variant and trivial mutant, the dtypes at which each case rejects it")
    s.set_defaults(run=cmd_selftest)

    m = sub.add_parser("model", help="whole-model accounting").add_subparsers(required=True, metavar="ACTION")
    s = m.add_parser("info", help="parameters by part, weight memory per precision, KV-cache bytes per token")
    s.add_argument("config", metavar="CONFIG", help="a transformers config.json (or its folder), or one "
                   "of gemma-7b, llama-2-7b, llama-3-8b, mistral-7b, mixtral-8x7b, deepseek-v3")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_model_info)

    s = sub.add_parser("bench", help="time every backend beside the reference and a peer library")
    s.add_argument("--component", action="append")
    s.add_argument("--backend", action="append", choices=BACKENDS)
    s.add_argument("--dtype", action="append", choices=FLOAT_DTYPES)
    s.add_argument("--tiny", action="store_true", help="the specs' tiny shapes (a smoke run)")
    s.add_argument("--repeats", type=int, default=5, help="timed runs at least (default 5)")
    s.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the results as JSON")
    s.set_defaults(run=cmd_bench)

    t = sub.add_parser("tokenizers", help="tokenizers on real vocabularies").add_subparsers(
        required=True, metavar="ACTION")
    s = fuzz.add_arguments(t.add_parser("fuzz", help="differential fuzzing against tiktoken, tokenizers "
                                        "or sentencepiece, shrinking a mismatch to the shortest text"))
    s.set_defaults(run=fuzz.run)

    s = sub.add_parser("coverage", help="generate docs/coverage.md: backends x dtypes and the kill matrix")
    s.add_argument("--out", metavar="FILE", required=True)
    s.set_defaults(run=cmd_coverage)
    return p


def _parallel_options(s, jobs_help="run N cases at a time (default 1)"):
    s.add_argument("--jobs", type=int, metavar="N", help=jobs_help)
    s.add_argument("--executor", choices=("process", "dask", "ray"), default="process",
                   help="where parallel tasks run (dask/ray: a local cluster, or the one in "
                        "$LLMREF_DASK_SCHEDULER / $RAY_ADDRESS)")


def _progress(args, what):
    """A rich progress bar on stderr (off for JSON on stdout or a non-terminal)."""
    bar = Progress(console=err, transient=True, disable=args.json == "-" or not err.is_terminal)
    task = bar.add_task(what, total=None)
    return bar, lambda: bar.advance(task)


def _report_options(s):
    s.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the JSON report (schema llmref-report/1) to FILE, or to stdout")
    s.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    s.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")


def _write(args, reports, title, extra=None):
    from llmref.report import write_reports

    write_reports(reports, command="llmref " + " ".join(sys.argv[1:]), json_path=args.json,
                  junit_path=args.junit, html_path=args.html, title=title, extra=extra)


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
    problems = {p[0].split("/")[0] for p in verify()}
    table = Table(title="llmref components")
    for col in ("component", "v", "cases (smoke/full)", "goldens", "dtypes", "backends", "summary"):
        table.add_column(col)
    for s in specs:
        smoke = sum(c.tier == "smoke" for c in s.cases)
        table.add_row(s.id, str(s.version), f"{smoke}/{len(s.cases) - smoke}",
                      Text("problem", "red") if s.id in problems else Text("ok"),
                      ",".join(SHORT[d] for d in s.dtypes), ", ".join(sorted(s.accel)), Text(s.summary))
    out.print(table)
    for b, (ok, note) in backends.items():
        out.print(Text.assemble(f"backend {b}: ", ("available", "green") if ok else
                                ("unavailable", "yellow"), f" ({note})"))
    return 0


def cmd_show(args):
    spec = load_spec(_components([args.component])[0])
    say(f"{spec.id} v{spec.version}: {spec.summary}\n", "bold")
    say(spec.definition.rstrip() + "\n")
    for title, items in (("Conventions", spec.conventions), ("References", spec.references)):
        say(title, "bold")
        for item in items:
            say(f"  - {item}")
    say(f"Reference {spec.ref}")
    for b, entry in spec.accel.items():
        say(f"{b} {entry['impl']} ({', '.join(entry['dtypes'])})")
    for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for t in tensors:
            say(f"  {kind} {t.name}: {t.dtype}{list(t.shape)} {t.doc}")
    for name, p in spec.params.items():
        say(f"  param {name}: {p['type']} = {p['default']!r} {p['doc']}")
    tol = spec.tolerance
    if tol.get("exact"):
        say(f"Tolerance exact (bit for bit at every dtype): {tol['reason']}")
    else:
        say(f"Tolerance {tol['ulps']} ulps" + (f" x sqrt({tol['reduction']})" if tol.get("reduction") else "")
            + (f", plus the bound {tol['bound']}" if tol.get("bound") else "") + f": {tol['reason']}")
    say("Cases", "bold")
    for c in spec.cases:
        say(f"  {c.id} [{c.tier}] {c.dims or ''} {c.params} {c.note}")
    say("Wrong variants", "bold")
    for v in spec.wrong_variants:
        say(f"  {v.id} (at {v.dtype}): {v.description}")
    return 0


def cmd_generate(args):
    written = generate(_components(args.component), args.out)
    say(f"wrote {len(written)} golden files")
    return 0


def cmd_pack(args):
    from llmref.pack import write_pack

    index = write_pack(args.out, _components(args.component))
    cases = sum(len(c["cases"]) for c in index["components"].values())
    say(f"wrote {args.out}: {len(index['components'])} components, {cases} cases, "
        f"{len(index['files'])} files")
    return 0


def cmd_verify(args):
    components = _components(args.component) if args.component else None
    problems = verify(components, args.root, deep=args.deep)
    for rel, reason in problems:
        say(f"FAIL {rel}: {reason}", "red")
    if problems:
        return 1
    say("all goldens match MANIFEST.json" + (" and the reference recomputed now" if args.deep else ""))
    return 0


def cmd_check(args):
    from llmref.check import default_jobs, run_check

    components = _components(args.component)
    if args.jobs is None:
        args.jobs = default_jobs(components)
    if args.jobs < 1:
        raise InputError(f"--jobs: must be >= 1, got {args.jobs}")
    start = time.monotonic()
    bar, advance = _progress(args, "checking")
    with bar:
        try:
            cells, invariants = run_check(components, args.backend, args.dtype, args.case,
                                          args.tier, advance, args.jobs, args.executor,
                                          invariants=True)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    wall = time.monotonic() - start
    failed = [c for c in cells if c.status == "fail"]
    broken = [i for i in invariants if i["failures"]]
    _write(args, [c.report for c in cells if c.report], "llmref check", extra={"cells": [
        {"component": c.component, "backend": c.backend, "dtype": c.dtype, "status": c.status,
         "note": c.note} for c in cells], "invariants": invariants})
    if args.json == "-":
        return 1 if failed or broken else 0
    _print_matrix(cells, args.backend or BACKENDS)
    for cell in failed:
        _print_failures(cell.report, f"{cell.component} / {cell.backend} / {cell.dtype}")
    ran = [c for c in cells if c.report]
    for i in invariants:
        say(f"invariants {i['component']} / {i['backend']} / {i['dtype']}: {i['passed']}/{i['total']}",
            "green" if not i["failures"] else "red")
        for f in i["failures"]:
            say(f"    {f['invariant']} on {f['case']}: {f['detail']}", "red")
    say(f"{len(ran) - len(failed)} of {len(ran)} component x backend x dtype cells passed, "
        f"{sum(i['passed'] for i in invariants)} of {sum(i['total'] for i in invariants)} invariant "
        f"checks, in {wall:.1f} s (--jobs {args.jobs}, {args.executor})")
    return 1 if failed or broken else 0


def _print_matrix(cells, backends):
    table = Table(title="llmref check: component x backend x dtype (passed/cases)")
    table.add_column("component")
    rows, unavailable = {}, {}
    for c in cells:
        rows.setdefault(c.component, {}).setdefault(c.backend, []).append(c)
        if c.status == "unavailable":
            unavailable[c.backend] = c.note
    for b in backends:
        header = Text(b)
        if b in unavailable:
            header.append(f"\nunavailable: {unavailable[b]}", "yellow")
        table.add_column(header)
    for component, by_backend in rows.items():
        row = [component]
        for b in backends:
            cell = Text()
            for c in by_backend.get(b, []):
                if c.status == "unavailable":
                    cell.append("unavailable ", "yellow")
                elif c.status == "absent":
                    cell.append("- ", "dim")
                else:
                    cell.append(f"{SHORT[c.dtype]} {c.note} ", "green" if c.status == "pass" else "red")
            row.append(cell)
        table.add_row(*row)
    out.print(table)
    say("- = no implementation of that component for that backend")


def _print_failures(report, title):
    for r in report.failures():
        say(f"{r.outcome.value} {title} case {r.case}: {r.detail}", "red")
        for c in r.comparisons:
            if c.metrics and c.outcome.value != "PASSED" and "nmse" in c.metrics:
                m = c.metrics
                say(f"    {c.output}: max_abs={m['max_abs_err']:.3g} max_rel={m['max_rel_err']:.3g} "
                    f"nmse={m['nmse']:.3g} cosine={m['cosine']:.9f} error/bound={m['headroom']:.3g} "
                    f"worst={m.get('worst_index')}")
        if r.diagnosis:
            d = r.diagnosis
            if d["matches"]:
                for m in d["matches"]:
                    say(f"    diagnosis: matches wrong variant {m}: {d['descriptions'][m]}", "yellow")
            elif d["nearest"]:
                say(f"    diagnosis: matches no known wrong variant; nearest is {d['nearest']} "
                    f"(NMSE {d['nearest_nmse']:.3g})")
        say(f"    reproduce: {r.repro}")


def cmd_audit(args):
    spec = parse_spec_file(args.spec) if args.spec else load_spec(args.component)
    if spec.id != args.component:
        raise InputError(f"--spec: {args.spec} defines {spec.id!r}, not {args.component!r}")
    if args.timeout <= 0:
        raise InputError(f"--timeout: must be > 0 seconds, got {args.timeout:g}")
    if args.fit:
        return _fit(args, spec)
    if (args.target is None) == (args.command is None):
        raise InputError("MODULE:CALLABLE: give either an implementation or --exec CMD, not both")
    if args.command is not None:
        from llmref.external import External

        try:
            target, label = External(args.command, args.timeout), f"exec:{args.command}"
        except ValueError as exc:
            raise InputError(str(exc)) from None
    else:
        target = _import_here(args.target) if args.in_process else args.target
        label = args.target
    args.jobs = 1 if args.jobs is None else args.jobs
    if args.jobs < 1:
        raise InputError(f"--jobs: must be >= 1, got {args.jobs}")
    if args.in_process and (args.jobs > 1 or args.executor != "process"):
        raise InputError("--jobs: --in-process runs one case at a time")
    start = time.monotonic()
    bar, advance = _progress(args, "auditing")
    with bar:
        report = audit(spec, target, cases=args.case, dtype=args.dtype, tier=args.tier, label=label,
                       timeout=args.timeout, diagnose=args.diagnose, jobs=args.jobs,
                       executor=args.executor, progress=advance)
    wall = time.monotonic() - start
    _write(args, [report], f"llmref audit {report.component} {report.implementation}")
    if args.json == "-":
        return 0 if report.passed else 1
    table = Table(title=Text(f"audit {report.component} {report.implementation} at {report.dtype} "
                             f"({report.isolation})"))
    for col in ("case", "outcome", "max abs err", "nmse", "cosine", "error/bound"):
        table.add_column(col)
    for r in report.results:
        m = next((c.metrics for c in r.comparisons if c.metrics.get("nmse") is not None), {})
        color = "green" if r.outcome.value == "PASSED" else "red"
        table.add_row(r.case, Text(r.outcome.value, color),
                      f"{m['max_abs_err']:.3g}" if m else "", f"{m['nmse']:.3g}" if m else "",
                      f"{m['cosine']:.9f}" if m else "", f"{m['headroom']:.3g}" if m else "")
    out.print(table)
    _print_failures(report, f"{report.component} / {report.implementation} / {report.dtype}")
    counts = ", ".join(f"{k} {v}" for k, v in report.counts().items())
    say(("PASSED" if report.passed else "FAILED") + f": {counts} in {wall:.1f} s "
        f"(--jobs {args.jobs}, {args.executor})", "green" if report.passed else "red")
    broken = _invariants(args, spec) if args.invariants else False
    if args.impact:  # informational: the exit code stays the audit's
        _impact(args)
    return 0 if report.passed and not broken else 1


def _invariants(args, spec) -> bool:
    """Run the spec's invariants on the implementation (in this process); True if any failed."""
    from llmref.invariants import run_invariants

    if args.command is not None:
        raise InputError("--invariants: needs MODULE:CALLABLE, not --exec")
    if not spec.invariants:
        say(f"invariants: {spec.id} declares none")
        return False
    results = run_invariants(spec, _import_here(args.target), args.dtype or "float32", args.case)
    for r in results:
        say(f"invariant {r.invariant} on {r.case}: " + ("holds" if r.ok else f"BROKEN: {r.detail}"),
            "green" if r.ok else "red")
    return any(not r.ok for r in results)


def _fit(args, spec):
    """`audit --fit`: the sampler runs in this process, drawing `--draws` ids per row."""
    from llmref.audit import Report
    from llmref.fit import audit_sampler

    if args.target is None:
        raise InputError("--fit: needs MODULE:CALLABLE (a sampler), not --exec")
    if args.draws < 1 or not 0 < args.alpha < 1:
        raise InputError(f"--draws/--alpha: need draws >= 1 and 0 < alpha < 1, got {args.draws}, {args.alpha}")
    results = audit_sampler(spec, _import_here(args.target), cases=args.case, draws=args.draws,
                            alpha=args.alpha, tier=args.tier)
    report = Report(spec.id, args.target, "float64", results, "in-process (fit)")
    _write(args, [report], f"llmref audit {spec.id} {args.target} --fit")
    for r in results:
        m = r.comparisons[0].metrics if r.comparisons else {}
        say(f"{r.outcome.value} {r.case}: {r.detail or 'fits'} "
            f"(min p-value bound {m.get('min_p_value_bound', 1):.3g}, {m.get('tests', 0)} tests)",
            "green" if r.outcome.value == "PASSED" else "red")
    say("PASSED" if report.passed else "FAILED", "green" if report.passed else "red")
    return 0 if report.passed else 1


def _impact(args):
    from llmref.impact import impact, render

    if args.command is not None:
        raise InputError("--impact: needs MODULE:CALLABLE, not --exec")
    dtype = args.dtype if args.dtype in ("float64", "float32") else "float32"
    render(impact(args.component, _import_here(args.target), dtype=dtype), out)


def _import_here(target):
    """Import the implementation into this process (--in-process); the current directory is
    searched after every installed package."""
    sys.path.append("")
    try:
        fn = resolve(target, "MODULE:CALLABLE")
    except SpecError as exc:
        raise InputError(str(exc)) from None
    except BaseException as exc:  # SystemExit or KeyboardInterrupt raised while importing
        raise InputError(f"MODULE:CALLABLE: importing {target!r} raised {type(exc).__name__}") from None
    if not callable(fn):
        raise InputError(f"MODULE:CALLABLE: {target!r} is not callable")
    return fn


def cmd_selftest(args):
    from llmref.selftest import selftest_document, selftest_junit

    document = selftest_document(_components(args.component), args.dtype, args.tier)
    if args.json:
        text = json.dumps(document, indent=1)
        if args.json == "-":
            print(text)
            return 1 if document["escaped"] else 0
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as handle:
            handle.write(selftest_junit(document))
    if args.matrix:
        with open(args.matrix, "w", encoding="utf-8") as handle:
            json.dump({e["component"]: e["matrix"] for e in document["components"]}, handle, indent=1)
    for entry in document["components"]:
        for dtype, d in entry["dtypes"].items():
            say(f"{entry['component']} at {dtype}: trivial mutants {d['rejected']}/{d['mutants']} rejected"
                f" ({d['not_applicable']} not applicable), correctly rounded output "
                + ("passed" if d["control_passed"] else "FAILED"), "green" if not d["escaped"] else "red")
            for e in d["escaped"]:
                say(f"    {'control' if e['mutant'] == 'expected' else 'NOT REJECTED'}: case {e['case']} "
                    f"output {e['output']} mutant {e['mutant']} -> {e['outcome']}", "red")
        for v in entry["variants"]:
            outcomes = ", ".join(f"{k}={n}" for k, n in v["counts"].items())
            say(f"{entry['component']} / {v['id']} at {v['dtype']}: "
                + ("rejected" if v["caught"] else "NOT REJECTED") + f" ({outcomes})",
                "green" if v["caught"] else "red")
    for dtype, b in document["largest_rtol"].items():
        say(f"largest relative bound at {dtype}: {b['rtol']:.3g} ({b['component']} / {b['case']})")
    return 1 if document["escaped"] else 0


def cmd_model_info(args):
    from llmref.model_info import info, render

    data = info(args.config)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        render(data, out)
    return 0


def cmd_bench(args):
    from llmref.bench import render_json, run_bench

    if args.repeats < 1:
        raise InputError(f"--repeats: must be >= 1, got {args.repeats}")
    if args.json not in (None, "-") and not Path(args.json).resolve().parent.is_dir():
        raise InputError(f"--json: no folder to write {args.json!r} in")  # before minutes of timing
    components = _components(args.component) if args.component else None
    bar, advance = _progress(args, "benchmarking")
    with bar:
        document = run_bench(components, args.backend, args.dtype, args.tiny, advance,
                             repeats=args.repeats, min_seconds=0.05 if args.tiny else 0.3)
    document["command"] = "llmref " + " ".join(sys.argv[1:])
    if args.json:
        render_json(document, args.json)
        if args.json == "-":
            return 0
    bandwidth = document["copy_bandwidth_bytes_per_s"]
    table = Table(title=Text(f"llmref bench on {document['machine']['cpu']} "
                             f"(copy bandwidth {bandwidth / 1e9:.1f} GB/s, one thread)"))
    for col in ("component", "dtype", "implementation", "median ms", "GB/s", "of copy bw",
                "x reference", "x peer"):
        table.add_column(col)
    first_dims = {}  # component -> the dims of its first shape; a further shape is named by what it changes
    for r in document["rows"]:
        first = first_dims.setdefault(r["component"], r["dims"])
        component = r["component"] + "".join(f" {k}={v}" for k, v in r["dims"].items() if first.get(k) != v)
        if "median_s" not in r:
            table.add_row(component, r["dtype"], r["implementation"],
                          Text(f"skipped: {r.get('skipped', '')}", "dim"), "", "", "", "")
            continue
        peer = next((f"{v:.2f} ({k[3:]})" for k, v in r.items() if k.startswith("vs_") and k != "vs_reference"), "")
        table.add_row(component, r["dtype"], r["implementation"], f"{r['median_s'] * 1e3:.3f}",
                      f"{r['bytes_per_s'] / 1e9:.2f}", f"{r['of_copy_bandwidth']:.2f}",
                      f"{r['vs_reference']:.2f}", peer)
    out.print(table)
    return 0


def cmd_coverage(args):
    from llmref.check import run_check
    from llmref.coverage import render
    from llmref.selftest import selftest_document

    components = component_ids()
    text = render(run_check(components)[0], selftest_document(components))
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(text)
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
