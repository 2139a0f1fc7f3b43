"""Generator CPU per opened session, the open path alone: mint, place, connect, upgrade,
ack, attempt record (what ``ConnectionUser`` does per session, without Locust).

    .venv/bin/python benchmarks/session_open.py 6400 64

Opens N sessions from C greenlets of one gevent process against the reference target
(two processes, another process than this one) and prints the process's CPU time per
session. CPU time, not wall time, so a busy machine changes the figure little; run it
from another checkout (its directory as the working directory) for a baseline.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.getcwd())

import gevent  # noqa: E402

from wsload.config.profile import load_profile  # noqa: E402
from wsload.config.tokens import TokenMinter  # noqa: E402
from wsload.net.client import ClientOptions, attempt_record, connect  # noqa: E402
from wsload.net.source_ips import SourcePicker  # noqa: E402
from wsload.protocol.carrier import place  # noqa: E402
from wsload.run.records import Who  # noqa: E402
from wsload.target import start_target  # noqa: E402

SECRET = "m" * 48
WARM_UP = 200


def main() -> int:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 6400
    greenlets = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    target = start_target(
        ["--workers", "2", "--connections-per-user", "0", "--no-compression"],
        secret=SECRET,
        timeout=60,
    )
    profile = load_profile()
    minter = TokenMinter(profile.token, secret=SECRET)
    options = ClientOptions(compression="off", source=SourcePicker(("127.0.0.2", "127.0.0.3")))
    held = []

    def opener(count: int, tag: str) -> None:
        for i in range(count):
            subject = f"u-{tag}-{i}"
            placement = place(profile.auth, target.url, minter.mint(subject))
            conn = connect(
                target.url, profile, placement, expected_subject=subject, options=options
            )
            attempt_record(conn, Who(i, subject, f"{subject}-1"), 1)
            held.append(conn)

    try:
        gevent.joinall([gevent.spawn(opener, WARM_UP // 10, f"w{j}") for j in range(10)])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        jobs = [gevent.spawn(opener, total // greenlets, f"g{j}") for j in range(greenlets)]
        gevent.joinall(jobs)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        n = len(held) - WARM_UP
        print(
            f"{os.path.basename(os.getcwd())}: {n} sessions, {cpu / n * 1000:.3f} ms CPU each "
            f"({n / cpu:,.0f} per generator CPU-second), wall {n / wall:,.0f}/s"
        )
    finally:
        for conn in held:
            conn.abort()
        target.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
