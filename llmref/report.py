"""Reports of audits (and of `check`, a list of audits): JSON, JUnit XML and one
self-contained HTML page.

JSON schema "llmref-report/1" (documented in specs/FORMAT.md, "Reports"):
    {"schema": "llmref-report/1", "llmref_version", "command",
     "reports": [Report.to_dict(), ...], "summary": {"reports", "cases", "counts", "passed"}}
plus, from `check`, "cells": [{component, backend, dtype, status, note}].
JUnit: one <testsuite> per report, one <testcase> per case; UNSUPPORTED is <skipped>.
HTML: per report a table of cases; per failing case the diagnosis, the reproduction
command, the worst elements with their indices, input / expected / actual side by side
and, when matplotlib is installed (the `report` extra), a histogram of error / bound; and a
coverage summary of the components, cases and dtypes that were run.
"""
import base64
import html
import io
import json
import xml.etree.ElementTree as ET

import numpy as np

from llmref import __version__
from llmref.compare import Outcome

SCHEMA = "llmref-report/1"
WORST_SHOWN = 8
VALUES_SHOWN = 12


def summary(reports) -> dict:
    counts = {}
    for report in reports:
        for outcome, n in report.counts().items():
            counts[outcome] = counts.get(outcome, 0) + n
    return {"reports": len(reports), "cases": sum(len(r.results) for r in reports),
            "counts": counts, "passed": all(r.passed for r in reports)}


def json_document(reports, command: str, extra=None) -> dict:
    return {"schema": SCHEMA, "llmref_version": __version__, "command": command,
            "reports": [r.to_dict() for r in reports], "summary": summary(reports), **(extra or {})}


# JUnit's split: <failure> is a wrong answer, <error> is the implementation not answering
_JUNIT_ERRORS = {Outcome.RUNTIME_ERROR, Outcome.CRASHED, Outcome.TIMEOUT}


def junit_xml(reports) -> str:
    suites = ET.Element("testsuites", {"name": "llmref"})
    for report in reports:
        failures = report.failures()
        errors = [r for r in failures if r.outcome in _JUNIT_ERRORS]
        skipped = [r for r in report.results if r.outcome is Outcome.UNSUPPORTED]
        suite = ET.SubElement(suites, "testsuite", {
            "name": f"{report.component}[{report.implementation}@{report.dtype}]",
            "tests": str(len(report.results)), "failures": str(len(failures) - len(errors)),
            "skipped": str(len(skipped)), "errors": str(len(errors))})
        for result in report.results:
            case = ET.SubElement(suite, "testcase", {
                "classname": f"llmref.{report.component}.{report.implementation}",
                "name": f"{result.case}[{report.dtype}]"})
            if result.outcome is Outcome.UNSUPPORTED:
                ET.SubElement(case, "skipped", {"message": result.detail})
            elif result.outcome is not Outcome.PASSED:
                tag = "error" if result.outcome in _JUNIT_ERRORS else "failure"
                failure = ET.SubElement(case, tag, {"type": result.outcome.value,
                                                    "message": result.detail})
                failure.text = f"reproduce: {result.repro}"
    return ET.tostring(suites, encoding="unicode")


# --- HTML --------------------------------------------------------------------------------

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; font-variant-numeric: tabular-nums; }
.PASSED { color: #176a1b; } .UNSUPPORTED { color: #777; } .fail { color: #b00020; font-weight: 600; }
code, pre { background: #f4f4f4; padding: 1px 4px; }
section.failure { border-left: 4px solid #b00020; padding-left: 1em; margin: 1em 0 2em; }
figure { margin: 0.5em 0; }
"""


def html_report(reports, title: str) -> str:
    """One self-contained HTML page (inline CSS and images, no scripts, no external links)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{e(title)}</h1>"]
    s = summary(reports)
    parts.append(f"<p id='summary'>{s['cases']} cases in {s['reports']} reports: "
                 + ", ".join(f"{e(k)} {v}" for k, v in sorted(s["counts"].items()))
                 + f" &mdash; {'passed' if s['passed'] else 'FAILED'}</p>")
    parts.append(_coverage(reports))
    for report in reports:
        parts.append(f"<h2>{e(report.component)} &middot; {e(report.implementation)} &middot; "
                     f"{e(report.dtype)} <small>({e(report.isolation)})</small></h2>")
        parts.append("<table><tr><th>case</th><th>outcome</th><th>error / bound</th><th>cosine</th>"
                     "<th>worst index</th><th>tie flips</th></tr>")
        for r in report.results:
            m = next((c.metrics for c in r.comparisons if "headroom" in c.metrics), {})
            klass = r.outcome.value if r.outcome in (Outcome.PASSED, Outcome.UNSUPPORTED) else "fail"
            parts.append(f"<tr><td>{e(r.case)}</td><td class='{klass}'>{e(r.outcome.value)}</td>"
                         f"<td>{_num(m.get('headroom'))}</td><td>{_num(m.get('cosine'), 9)}</td>"
                         f"<td>{e(str(m.get('worst_index', '')))}</td>"
                         f"<td>{sum(c.metrics.get('tie_flips', 0) for c in r.comparisons)}</td></tr>")
        parts.append("</table>")
        for r in report.failures():
            parts.append(_failure(report, r))
    parts.append("</body></html>")
    return "".join(parts)


def _num(value, digits=3):
    return "" if value is None else f"{value:.{digits}g}" if digits < 9 else f"{value:.9f}"


def _coverage(reports) -> str:
    e = html.escape
    rows = {}
    for r in reports:
        rows.setdefault((r.component, r.implementation), {})[r.dtype] = (
            sum(x.outcome is Outcome.PASSED for x in r.results), len(r.results))
    dtypes = sorted({d for v in rows.values() for d in v})
    out = ["<h2>Coverage</h2><table id='coverage'><tr><th>component</th><th>implementation</th>"]
    out += [f"<th>{e(d)}</th>" for d in dtypes] + ["</tr>"]
    for (component, impl), by_dtype in sorted(rows.items()):
        out.append(f"<tr><td>{e(component)}</td><td>{e(impl)}</td>")
        for d in dtypes:
            passed, total = by_dtype.get(d, (None, None))
            out.append("<td></td>" if total is None else f"<td>{passed}/{total} passed</td>")
        out.append("</tr>")
    return "".join(out) + "</table>"


def _failure(report, r) -> str:
    e = html.escape
    out = [f"<section class='failure' data-case='{e(r.case)}'><h3>{e(report.component)} / {e(r.case)} "
           f"at {e(report.dtype)}: <span class='fail'>{e(r.outcome.value)}</span></h3>"
           f"<p>{e(r.detail)}</p>"]
    if r.diagnosis:
        d = r.diagnosis
        if d["matches"]:
            out += [f"<p class='diagnosis'>Diagnosis: matches wrong variant <b>{e(m)}</b>: "
                    f"{e(d['descriptions'][m])}</p>" for m in d["matches"]]
        elif d["nearest"]:
            out.append(f"<p class='diagnosis'>Diagnosis: matches no known wrong variant; nearest is "
                       f"<b>{e(d['nearest'])}</b> (NMSE {d['nearest_nmse']:.3g})</p>")
    out.append(f"<p>Reproduce: <code>{e(r.repro)}</code></p>")
    for c in r.comparisons:
        if c.evidence is None:
            continue
        out.append(f"<h4>output {e(c.output)}</h4>")
        out.append(_histogram(c))
        out.append(_worst_table(c))
        out.append(_side_by_side(r.inputs or {}, c))
    return "".join(out) + "</section>"


def _worst_table(c) -> str:
    a, x, ratio = (np.asarray(c.evidence[k], np.float64) for k in ("actual", "expected", "ratio"))
    order = np.argsort(-np.nan_to_num(ratio.reshape(-1), nan=np.inf, posinf=np.inf))[:WORST_SHOWN]
    rows = ["<table class='worst'><tr><th>index</th><th>actual</th><th>expected</th>"
            "<th>error / bound</th></tr>"]
    for flat in order:
        index = tuple(int(i) for i in np.unravel_index(int(flat), a.shape)) if a.shape else ()
        rows.append(f"<tr><td>{index}</td><td>{a.reshape(-1)[flat]:.9g}</td>"
                    f"<td>{x.reshape(-1)[flat]:.9g}</td><td>{ratio.reshape(-1)[flat]:.3g}</td></tr>")
    return "".join(rows) + "</table>"


def _side_by_side(inputs, c) -> str:
    e = html.escape
    columns = {f"input {k}": v for k, v in inputs.items() if isinstance(v, np.ndarray) and v.size}
    columns.update({"expected": c.evidence["expected"], "actual": c.evidence["actual"]})
    flat = {k: np.asarray(v, np.float64).reshape(-1)[:VALUES_SHOWN] for k, v in columns.items()}
    head = "".join(f"<th>{e(k)}</th>" for k in flat)
    rows = [f"<table class='values'><tr><th>flat index</th>{head}</tr>"]
    for i in range(max(len(v) for v in flat.values())):
        cells = "".join(f"<td>{v[i]:.6g}</td>" if i < len(v) else "<td></td>" for v in flat.values())
        rows.append(f"<tr><td>{i}</td>{cells}</tr>")
    return "".join(rows) + "</table>"


def _histogram(c) -> str:
    """A histogram of log10(error / bound), as an inline PNG; a note without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "<p class='noplot'>(error histogram: install the report extra, pip install llmref[report])</p>"
    ratio = np.asarray(c.evidence["ratio"], np.float64).reshape(-1)
    finite = ratio[np.isfinite(ratio) & (ratio > 0)]
    if finite.size == 0:  # every failing element is a NaN/Inf mismatch: nothing to bin
        return (f"<p class='noplot'>{int(np.isinf(ratio).sum())} elements differ in NaN/Inf "
                "position; no finite error to plot</p>")
    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    logs = np.log10(finite)
    ax.hist(logs, bins=np.linspace(min(logs.min(), 0.0) - 0.5, max(logs.max(), 0.0) + 0.5, 41),
            color="#b00020")
    ax.axvline(0.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("log10(error / bound)   (right of the dashed line fails)")
    ax.set_ylabel("elements")
    ax.set_title(f"{c.output}: {int((ratio > 1).sum())} of {ratio.size} elements outside the bound")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f"<figure><img class='histogram' alt='histogram of error / bound for {html.escape(c.output)}' "
            f"width='600' height='260' src='data:image/png;base64,{data}'></figure>")


def write_reports(reports, *, command: str, json_path=None, junit_path=None, html_path=None,
                  title="llmref report", extra=None):
    """Write whichever reports were asked for; json_path '-' means standard output. `extra`
    adds top-level JSON fields (check: the cells, with why a backend was unavailable)."""
    if json_path:
        text = json.dumps(json_document(reports, command, extra), indent=1)
        if json_path == "-":
            print(text)
        else:
            with open(json_path, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
    if junit_path:
        with open(junit_path, "w", encoding="utf-8") as handle:
            handle.write(junit_xml(reports))
    if html_path:
        with open(html_path, "w", encoding="utf-8") as handle:
            handle.write(html_report(reports, title))
