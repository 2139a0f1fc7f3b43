"""The notebooks in analysis/ run top to bottom against real runs, showing figures."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from wsload_runs import REPO, real_run

pytestmark = pytest.mark.slow


def execute(name: str, run_dir, tmp_path, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("WSLOAD_RUN", str(run_dir))  # the kernel inherits it
    monkeypatch.setenv("WSLOAD_TARGET_USERS", "500")
    notebook = nbformat.read(REPO / "analysis" / name, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in notebook.cells)
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> tuple[list[str], int]:
    texts, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            texts.append(output.get("text", "") + str(output.get("data", {}).get("text/plain")))
            images += "image/png" in output.get("data", {})
    return texts, images


def test_explore_notebook_runs_against_a_real_chat_run(tmp_path_factory, tmp_path, monkeypatch):
    run_dir = real_run(tmp_path_factory.getbasetemp(), "chat")
    texts, images = outputs(execute("explore.ipynb", run_dir, tmp_path, monkeypatch))
    assert images == 3
    assert any("turns" in t and "users" in t for t in texts)


def test_capacity_notebook_runs_against_a_real_stepped_run(tmp_path_factory, tmp_path, monkeypatch):
    run_dir = real_run(tmp_path_factory.getbasetemp(), "steps")
    texts, images = outputs(execute("capacity.ipynb", run_dir, tmp_path, monkeypatch))
    assert images == 2
    joined = "\n".join(texts)
    assert "Steps tested (users): 5, 10, 15." in joined
    # every step met the SLO: a lower bound, from which no instance count is projected
    assert "No instance projection for 500 users" in joined
    assert "no projection: every step up to 15 users met the SLO" in joined
