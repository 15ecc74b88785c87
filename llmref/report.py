"""JUnit XML for audit reports: one <testsuite> per report, one <testcase> per case."""
import xml.etree.ElementTree as ET

from llmref.compare import Outcome


def junit_xml(reports) -> str:
    suites = ET.Element("testsuites")
    for report in reports:
        failures = report.failures()
        skipped = [r for r in report.results if r.outcome is Outcome.UNSUPPORTED]
        suite = ET.SubElement(suites, "testsuite", {
            "name": f"{report.component}[{report.implementation}@{report.dtype}]",
            "tests": str(len(report.results)), "failures": str(len(failures)),
            "skipped": str(len(skipped)), "errors": "0"})
        for result in report.results:
            case = ET.SubElement(suite, "testcase", {
                "classname": f"llmref.{report.component}.{report.implementation}",
                "name": f"{result.case}[{report.dtype}]"})
            if result.outcome is Outcome.UNSUPPORTED:
                ET.SubElement(case, "skipped", {"message": result.detail})
            elif result.outcome is not Outcome.PASSED:
                failure = ET.SubElement(case, "failure", {"type": result.outcome.value,
                                                          "message": result.detail})
                failure.text = f"reproduce: {result.repro}"
    return ET.tostring(suites, encoding="unicode")
