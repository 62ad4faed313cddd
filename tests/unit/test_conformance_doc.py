"""docs/conformance.md is a promise: every row names an upstream source and a test that exists.
A renamed or deleted test, or a row without a source, fails here rather than going stale."""
from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "conformance.md"


def _rows():
    """(section anchor, cells) for each body row of a requirement table (Requirement | Source | Field | Test)."""
    section, header, rows = None, None, []
    for line in DOC.read_text().splitlines():
        m = re.match(r'<a id="([a-z-]+)"></a>', line)
        if m:
            section = m.group(1)
        if not line.startswith("|"):
            header = None
            continue
        # Split on pipes outside backticks (a cell may quote `a|b`).
        cells = [c.strip() for c in re.split(r"\|(?=(?:[^`]*`[^`]*`)*[^`]*$)", line.strip().strip("|"))]
        if header is None:
            header = cells
            continue
        if set(line) <= set("|-: "):
            continue
        if header[0] == "Requirement":
            rows.append((section, dict(zip(header, cells))))
    return rows


def _test_names():
    names = set()
    for p in (ROOT / "tests").rglob("*.py"):
        names.add(p.stem)
        names |= set(re.findall(r"^\s*def (test_\w+)", p.read_text(), re.M))
    return names


def test_every_component_the_issue_lists_has_a_section():
    text = DOC.read_text()
    for anchor in ("gpu-system", "node-agent", "models", "keda", "cluster-autoscaler",
                   "prometheus-operator", "gpu-operator", "testbed"):
        assert f'<a id="{anchor}"></a>' in text, anchor
    for component in ("device plugin", "GPU Feature Discovery", "MPS", "DCGM exporter", "CDI", "vLLM", "Triton",
                      "Model cache", "llm-compressor", "Locust", "KEDA", "clusterapi", "EKS", "GKE", "AKS",
                      "Prometheus Operator", "GPU Operator"):
        assert component.lower() in text.lower(), component


def test_every_row_has_a_source_and_a_test_that_exists():
    rows = _rows()
    assert len(rows) > 150  # the tables were parsed at all
    known = _test_names()
    for section, row in rows:
        where = (section, row["Requirement"][:60])
        assert any(k.startswith("Upstream source") and v for k, v in row.items()), where
        cited = re.findall(r"\btest_\w+", row["Test"])
        assert cited, where
        missing = [n for n in cited if n not in known]
        assert not missing, (where, missing)


def test_anchors_the_docs_link_to_exist():
    anchors = set(re.findall(r'<a id="([a-z-]+)"></a>', DOC.read_text()))
    for p in list((ROOT / "docs").rglob("*.md")) + list((ROOT / "roles").glob("*/README.md")) + [ROOT / "README.md"]:
        for anchor in re.findall(r"conformance\.md#([a-z-]+)", p.read_text()):
            assert anchor in anchors, (p.name, anchor)
