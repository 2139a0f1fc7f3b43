"""The notebooks committed in analysis/ are executed (figures visible where they are read),
cleanly, on a demo run and a stepped run, small, free of secrets, and tell their story."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"
NOTEBOOKS = {"explore.ipynb": 4, "capacity.ipynb": 2}  # PNG figures each one shows
MAX_NOTEBOOK_BYTES = 600_000
MAX_FIGURE_BYTES = 150_000
SECRETS = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.|JWT_SECRET_KEY=\S|jwt_secret\W+[^*\s\"']{6,}")


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(ANALYSIS / name, as_version=4)


def text_of(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(str(output.get("data", {}).get("text/plain", "")))
            parts.append(str(output.get("data", {}).get("text/html", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_was_executed_top_to_bottom_without_errors(name):
    notebook = load(name)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for cell in code:
        for output in cell.outputs:
            assert output.output_type != "error", (cell.source, output)
            if output.output_type == "stream":
                assert output.name != "stderr" or "Traceback" not in output.text
    shown = [c for c in code if c.outputs]
    assert len(shown) >= len(code) - 1  # the parameters cell alone shows nothing


@pytest.mark.parametrize(("name", "figures"), NOTEBOOKS.items())
def test_committed_notebook_shows_its_figures_and_stays_small(name, figures):
    path = ANALYSIS / name
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES
    pngs = [
        base64.b64decode(output["data"]["image/png"])
        for cell in load(name).cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert len(pngs) == figures
    for png in pngs:
        assert png.startswith(b"\x89PNG") and 5_000 < len(png) < MAX_FIGURE_BYTES


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_holds_no_secret(name):
    raw = (ANALYSIS / name).read_text()
    assert not SECRETS.search(raw)
    assert "/root/" not in raw and "/home/" not in raw  # no absolute paths of a machine


def test_explore_was_run_on_a_demo_and_tells_what_to_look_at_and_why():
    notebook = load("explore.ipynb")
    assert "demo-" in text_of(notebook)  # the run make demo makes
    story = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    for heading in (
        "Did the load happen, and how much of it failed?",
        "How long did users wait",
        "What failed, by taxonomy id, with examples",
        "Authentication and security under load",
        "Was the generator healthy?",
    ):
        assert re.search(rf"^## .*{re.escape(heading)}", story, re.MULTILINE), heading
    for why in ("throughput", "failed share", "TTFE", "p95", "taxonomy id", "auth_not_enforced"):
        assert why in story, why
    assert "results/latest" in story and "WSLOAD_RUN" in story


def test_capacity_was_run_on_a_stepped_run_with_a_measured_limit():
    text = text_of(load("capacity.ipynb"))
    assert "Steps tested (users): 10, 20, 30" in text
    assert "Measured limit" in text and "instances" in text
