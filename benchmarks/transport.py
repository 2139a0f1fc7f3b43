"""What browser-grade transport costs one generator core: permessage-deflate and wss://.

    .venv/bin/python benchmarks/transport.py                 # everything, about 4 minutes
    .venv/bin/python benchmarks/transport.py --only deflate --repeats 3

Set up as ``benchmarks/generator.py`` (target pinned to CPU 1 with ``--workers 1``, the
generator under test to CPU 0), each figure measured with and without in the same session,
interleaved (with, without, with, ...), medians reported, ratios per repeat:

* ``deflate``: turns/s of the full ChatUser path with ``--compression browser`` (the target
  agrees to permessage-deflate) and with ``--compression off``, per generator core; KB per
  idle authenticated session held by one process, compressed and not.
* ``tls``: sessions/s (HandshakeUser: connect, TLS, upgrade, ack, close; a full TLS
  handshake each) and turns/s (ChatUser) over ``wss://`` next to ``ws://``, per core.

Per core: the rate divided by the generator's CPU share over the window (its core is
pinned, so a share near 100% means the figure is the generator's own limit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generator as g

MEMORY_OPTIONS = (
    "opts = ClientOptions(connect_timeout_s=30, handshake_timeout_s=30, ack_timeout_s=30)"
)
assert MEMORY_OPTIONS in g.MEMORY
MEMORY = g.MEMORY.replace(MEMORY_OPTIONS, MEMORY_OPTIONS[:-1] + ", compression=sys.argv[4])")


@contextlib.contextmanager
def certificates():
    """A throwaway CA and a certificate for 127.0.0.1, as PEM files."""
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        ca_file, cert_file = f"{tmp}/ca.pem", f"{tmp}/server.pem"
        ca.cert_pem.write_to_path(ca_file)
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(cert_file)
        yield ca_file, cert_file


def full_run(args, locustfile: str, url: str, users: int, name: str, target_pid: int, *extra):
    """One Locust run pinned to the generator core: rate of ``name``, CPU shares."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "run"
        cmd = g.locust(locustfile, url, users, args.warm + args.window + 1, results, *extra)
        cpu, target_cpu = g.measure_process(
            cmd, args.warm + 1.5, args.window - 1, timeout=120, target_pid=target_pid
        )
        samples = g.load_samples(results)
    first = samples["ts"].min()
    rate = g.rate(samples, name, first + args.warm, first + args.warm + args.window - 1)
    extensions = samples.loc[samples["name"] == "connect", "detail"].dropna()
    agreed = extensions.iloc[0] if len(extensions) else ""
    return {"rate": rate, "cpu": cpu, "target_cpu": target_cpu or 0.0, "agreed": agreed}


def compare(args, table: list[str], label: str, unit: str, runs: dict[str, callable]) -> None:
    """Interleaved repeats of each variant; medians, per-core rates and per-repeat ratios."""
    results: dict[str, list[dict]] = {variant: [] for variant in runs}
    for _ in range(args.repeats):
        for variant, run in runs.items():
            results[variant].append(run())
    med = statistics.median
    for variant, rows in results.items():
        rates = [r["rate"] for r in rows]
        per_core = [r["rate"] / max(r["cpu"], 0.01) for r in rows]
        note = f" ({rows[0]['agreed']})" if rows[0].get("agreed") else ""
        each = ", ".join(f"{x:,.0f}" for x in rates)
        table.append(
            f"| {unit}, {label} {variant}{note} | {med(rates):,.0f} | {med(per_core):,.0f} per "
            f"core; generator CPU {med(r['cpu'] for r in rows):.0%}, target CPU "
            f"{med(r['target_cpu'] for r in rows):.0%}; runs: {each} |"
        )
    (new, old) = list(results)
    ratios = [
        (a["rate"] / max(a["cpu"], 0.01)) / max(b["rate"] / max(b["cpu"], 0.01), 1e-9)
        for a, b in zip(results[new], results[old], strict=True)
    ]
    table.append(
        f"| ratio per core, {unit} {label} {new} / {old} | {med(ratios):.2f} | "
        f"per repeat: {', '.join(f'{r:.2f}' for r in ratios)} |"
    )


def phase_deflate(args, table: list[str]) -> None:
    chat = ("--think-time", "0", "--heartbeat-interval", "0")
    with g.fresh_target(*g.FAST_TURN) as t:
        compare(
            args,
            table,
            "ChatUser",
            "turns/s",
            {
                f"--compression {mode}": (
                    lambda mode=mode: full_run(
                        args,
                        "ws_auth.py",
                        t.url,
                        args.sessions,
                        "turn:e2e",
                        t.pid,
                        *chat,
                        "--compression",
                        mode,
                    )
                )
                for mode in ("browser", "off")
            },
        )
    g.raise_fd_limit()
    with g.fresh_target("--max-message-bytes", "8192") as t:
        for n in args.memory_sizes:
            for mode in ("browser", "off"):
                proc = subprocess.run(
                    [g.PY, "-c", MEMORY, t.url, str(n), g.SECRET, mode],
                    cwd=g.REPO,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                try:
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
                except (IndexError, ValueError):
                    table.append(
                        f"| KB per idle session, {mode} | failed: {proc.stderr[-200:]!r} | |"
                    )
                    continue
                table.append(
                    f"| KB per idle authenticated session at {result['sessions']:,} held, "
                    f"--compression {mode} | {result['kb_each']:.1f} | |"
                )


def phase_tls(args, table: list[str]) -> None:
    chat = ("--think-time", "0", "--heartbeat-interval", "0", "--compression", "off")
    with (
        certificates() as (ca_file, cert_file),
        g.fresh_target(*g.FAST_TURN) as plain,
        g.fresh_target(*g.FAST_TURN, "--tls-cert", cert_file) as tls,
    ):
        targets = {"wss://": (tls, ("--tls-ca", ca_file)), "ws://": (plain, ())}

        def runs(locustfile: str, users: int, name: str, *extra: str):
            return {
                scheme: (
                    lambda t=t, more=more: full_run(
                        args, locustfile, t.url, users, name, t.pid, *extra, *more
                    )
                )
                for scheme, (t, more) in targets.items()
            }

        compare(
            args,
            table,
            "HandshakeUser",
            "sessions/s",
            runs("handshakes.py", 50, "auth", "--compression", "off"),
        )
        compare(
            args,
            table,
            "ChatUser",
            "turns/s",
            runs("ws_auth.py", args.sessions, "turn:e2e", *chat),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="deflate,tls")
    parser.add_argument("--window", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warm", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument("--sessions", type=int, default=200, help="concurrent chat sessions")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[2000])  # fmt: skip
    args = parser.parse_args()
    phases = args.only.split(",")
    table = ["| figure (one generator core) | value | per core / note |", "|---|---|---|"]
    if "deflate" in phases:
        phase_deflate(args, table)
    if "tls" in phases:
        phase_tls(args, table)
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
