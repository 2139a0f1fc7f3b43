"""results/latest: the newest run in the default place, and run paths found from anywhere."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from wsload.analysis import run as analysis_run
from wsload.analysis.run import resolve_run_path
from wsload.errors import ConfigError
from wsload.run.recorder import link_latest_run, prepare_run_folder


def test_a_default_run_becomes_latest_through_a_relative_symlink(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = prepare_run_folder(None, "20260101-000000-aaaaaa")
    latest = tmp_path / "results" / "latest"
    assert latest.is_symlink() and os.readlink(latest) == "20260101-000000-aaaaaa"
    second = prepare_run_folder(None, "20260101-000001-bbbbbb")
    assert os.readlink(latest) == second.name and latest.resolve() == second.resolve()
    assert first.is_dir()  # the older run stays
    # relative: the results folder moved elsewhere keeps its link working
    moved = tmp_path / "elsewhere"
    (tmp_path / "results").rename(moved)
    assert (moved / "latest").resolve() == (moved / second.name).resolve()
    # no temporary links left behind
    assert sorted(p.name for p in moved.iterdir()) == sorted([first.name, second.name, "latest"])


def test_an_explicit_results_folder_does_not_move_latest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = prepare_run_folder(None, "20260101-000000-aaaaaa")
    prepare_run_folder(tmp_path / "results" / "mine", "ignored")
    prepare_run_folder(tmp_path / "other", "ignored")
    assert os.readlink(tmp_path / "results" / "latest") == default.name
    assert not (tmp_path / "latest").exists()


def test_a_folder_that_failed_to_start_never_becomes_latest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = prepare_run_folder(None, "20260101-000000-aaaaaa")
    (tmp_path / "results" / "20260101-000001-bbbbbb").write_text("a file, not a folder")
    with pytest.raises(ConfigError):
        prepare_run_folder(None, "20260101-000001-bbbbbb")
    (good / "samples.csv").write_text("v\n")
    with pytest.raises(ConfigError):  # a folder that holds a run already
        prepare_run_folder(None, good.name)
    assert os.readlink(tmp_path / "results" / "latest") == good.name
    # a run prepared now but linked only later (the demo, once samples were recorded)
    later = prepare_run_folder(None, "20260101-000002-cccccc", link_latest=False)
    assert os.readlink(tmp_path / "results" / "latest") == good.name
    link_latest_run(later)
    assert os.readlink(tmp_path / "results" / "latest") == later.name


def test_the_link_is_replaced_atomically_under_concurrent_readers(tmp_path):
    results = tmp_path / "results"
    folders = [results / f"run-{i}" for i in range(2)]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "samples.csv").write_text("v\n")
    link_latest_run(folders[0])
    missing: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            if not (results / "latest" / "samples.csv").is_file():
                missing.append("missing")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(300):
            link_latest_run(folders[i % 2])
    finally:
        done.set()
        reader.join(5)
    assert missing == []  # never absent, never half made


def test_without_symlinks_latest_is_a_text_file_that_load_run_follows(tmp_path, monkeypatch):
    def no_symlinks(*args, **kwargs):
        raise OSError(1, "symbolic links are not supported here")

    run = tmp_path / "results" / "20260101-000000-aaaaaa"
    run.mkdir(parents=True)
    monkeypatch.setattr(os, "symlink", no_symlinks)
    link = link_latest_run(run)
    assert link is not None and not link.is_symlink()
    assert link.read_text() == run.name + "\n"
    assert resolve_run_path(link) == run
    # a real folder named latest is left alone
    other = tmp_path / "other"
    (other / "latest").mkdir(parents=True)
    assert link_latest_run(other / "run") is None and (other / "latest").is_dir()


def test_relative_run_paths_are_found_from_the_repository_and_the_notebooks(tmp_path, monkeypatch):
    repository = tmp_path / "checkout"
    (repository / "analysis").mkdir(parents=True)
    (repository / "pyproject.toml").write_text("")
    run = repository / "results" / "20260101-000000-aaaaaa"
    run.mkdir(parents=True)
    monkeypatch.setattr(analysis_run, "REPOSITORY", repository)
    monkeypatch.setattr(analysis_run, "NOTEBOOKS", repository / "analysis")
    monkeypatch.chdir(repository / "analysis")  # where a Jupyter kernel starts
    # as documented (relative to the repository), and as the notebook folder sees it
    assert resolve_run_path(f"results/{run.name}") == repository / "results" / run.name
    assert resolve_run_path(f"../results/{run.name}").resolve() == run
    assert resolve_run_path(run) == run
    missing = Path("results/nothing-here")
    assert resolve_run_path(missing) == missing


def test_a_missing_latest_says_how_to_make_a_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(analysis_run, "REPOSITORY", tmp_path / "no-checkout")
    with pytest.raises(ConfigError) as error:
        analysis_run.load_run("results/latest")
    assert "no run has been made here yet" in str(error.value)
    assert "make demo" in error.value.fix
