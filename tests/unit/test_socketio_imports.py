"""A process that speaks plain JSON never loads the Socket.IO libraries (they pull in
aiohttp and requests: a third of a second at the start of every process)."""

from __future__ import annotations

import subprocess
import sys


def test_a_json_run_process_never_imports_engineio_or_socketio():
    code = (
        "import sys; import wsload.locustfiles.ws_auth; import wsload.net.transport_check; "
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('engineio', 'socketio')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == []
