"""What a load-generating process imports: Locust only through wsload.locust, never pandas
(pyarrow, which writes the results tables, is the one heavy library it takes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "wsload"
LOCUSTFILES = ("ws_auth", "handshakes", "capacity")


def imports_of(locustfile: str) -> set[str]:
    code = (
        f"import sys; import wsload.locustfiles.{locustfile}; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pandas', 'pyarrow', 'matplotlib', 'locust'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(run.stdout.split())


@pytest.mark.parametrize("locustfile", ["ws_auth", "handshakes"])
def test_the_chat_and_handshake_locustfiles_never_import_pandas(locustfile):
    loaded = imports_of(locustfile)
    assert "locust" in loaded  # the test can see imports at all
    assert not {m for m in loaded if m.split(".")[0] in ("pandas", "matplotlib")}


def test_the_capacity_locustfile_never_imports_pandas():
    loaded = imports_of("capacity")
    assert "locust" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("pandas", "matplotlib")}


def test_the_connections_locustfile_loads_arrow_before_locust_forks_its_workers():
    loaded = imports_of("connections")
    assert "pyarrow.ipc" in loaded and "locust" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("pandas", "matplotlib")}


def test_only_wsload_locust_imports_locust():
    importing = re.compile(r"^\s*(from|import)\s+locust\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if importing.search(path.read_text()) and "locust" not in path.relative_to(PACKAGE).parts
    ]
    assert offenders == []


def test_what_ends_a_run_on_a_native_thread_imports_nothing_there():
    """Every module the end of a run imports inside its functions is imported on the hub
    first (END_OF_RUN_MODULES): an import on gevent's native thread takes patched locks."""
    import ast
    import importlib.util
    from pathlib import Path

    # read from the source: importing wsload.locust would import Locust, which
    # monkey-patches this test process
    runs = Path(importlib.util.find_spec("wsload").origin).parent / "locust" / "runs.py"
    assignment = next(
        node
        for node in ast.parse(runs.read_text()).body
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], "id", "") == "END_OF_RUN_MODULES"
    )
    end_of_run_modules = ast.literal_eval(assignment.value)

    seen, lazy = set(), set()
    todo = ["wsload.run.writer", "wsload.run.summary", "wsload.gate.evaluate"]
    while todo:  # every results and gate module they reach, at import time or later
        name = todo.pop()
        if name in seen or not name.startswith(("wsload.run", "wsload.gate")):
            continue
        seen.add(name)
        tree = ast.parse(Path(importlib.util.find_spec(name).origin).read_text())
        in_functions = {
            id(node)
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef)
            for node in ast.walk(fn)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            todo.extend(names)
            if id(node) in in_functions:
                lazy.update(names)
    missing = {m for m in lazy if m.split(".")[0] in ("wsload", "duckdb", "pyarrow", "pandas")}
    missing -= set(end_of_run_modules) | {"typing"}
    assert not missing, sorted(missing)
