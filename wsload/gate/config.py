"""Gate configuration: thresholds from the command line and a TOML file, goodput limits,
warm-up and the security defaults, merged into one ``GateConfig``.

The command line beats the file, so a CI job can share one file and tighten or relax a
single setting per job; every problem is a ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsload.errors import ConfigError
from wsload.gate.threshold_model import MARKERS, Threshold
from wsload.gate.thresholds import parse_duration, parse_goodput_limit, parse_threshold

# Per-turn service levels for goodput, in ms (docs/PROTOCOL.md "Service levels"): first
# event <= 5 s, whole turn <= 60 s. Gaps get 1 s, the protocol's event-delivery bound, not
# its 100 ms mock-agent figure: on a real agent a gap holds thinking and tool time.
DEFAULT_GOODPUT_MS: Mapping[str, float] = {
    "turn:ttfe": 5000.0,
    "turn:e2e": 60000.0,
    "turn:gap": 1000.0,
}

# On unless switched off: a run against a server that does not enforce auth or keep users
# apart measures nothing worth gating, so these also abort the run at the first offence.
SECURITY_DEFAULTS = (
    (
        "security: auth enforced",
        "probe.auth_not_enforced == 0 abort",
        "a negative auth probe was accepted",
    ),
    (
        "security: identity",
        "identity_mismatch.count == 0 abort",
        "an ack named another user than the token's",
    ),
    (
        "security: isolation",
        "foreign_event.count == 0 abort",
        "a session received an event of another user, thread or run",
    ),
)
SECURITY_ORIGIN = "security default"

# Always on: a run in which no connection or no session got through measured nothing, and
# must not read as a pass. Restating the metric (``auth_rejected.failure_rate <= 100%``) drops one.
RUN_CHECKS = (
    (
        "run: connections",
        "connect.failure_rate < 100%",
        "every connection attempt failed before the upgrade: nothing was measured "
        "(is the host right, and is the server up?)",
    ),
    (
        "run: sessions",
        "auth_rejected.failure_rate < 100%",
        "every session was rejected at auth: is the secret, issuer or audience right?",
    ),
    (
        "run: connects",
        "connect.failure_rate < 1%",
        "more than 1% of connection attempts failed before the upgrade (failures by "
        "taxonomy id say why)",
    ),
    (
        "run: generator",
        "local_exhausted.count == 0",
        "the generator ran out of local ports or open files: those connects measure the "
        "load generator, not the server (spread over --source-ips, run more --processes)",
    ),
)
RUN_CHECK_ORIGIN = "run check"


@dataclass(frozen=True)
class GateConfig:
    """Everything a gate evaluation needs, from the command line and/or a TOML file."""

    thresholds: tuple[Threshold, ...] = ()
    warmup_s: float = 0.0
    security: bool = True
    run_checks: bool = True  # RUN_CHECKS; off only where a caller gates something else
    goodput_limits_ms: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GOODPUT_MS))

    def effective(self) -> tuple[Threshold, ...]:
        """The thresholds to evaluate: the given ones, the security defaults, the run checks.

        A default is dropped when a given threshold has the same metric, so a team can
        restate it (e.g. without ``abort``) instead of switching the whole gate off.
        """
        checks = run_checks() if self.run_checks else ()
        defaults = (*security_defaults(), *checks) if self.security else checks
        given = {t.metric for t in self.thresholds}
        return self.thresholds + tuple(d for d in defaults if d.metric not in given)


def security_defaults() -> tuple[Threshold, ...]:
    return _implicit(SECURITY_DEFAULTS, SECURITY_ORIGIN)


def run_checks() -> tuple[Threshold, ...]:
    return _implicit(RUN_CHECKS, RUN_CHECK_ORIGIN)


def _implicit(entries: Sequence[tuple[str, str, str]], origin: str) -> tuple[Threshold, ...]:
    return tuple(
        parse_threshold(text, origin=origin, description=why, implicit=True, label=label)
        for label, text, why in entries
    )


_FILE_KEYS = ("warmup", "security", "goodput", "threshold")
_ENTRY_KEYS = ("expression", "metric", "condition", "abort", "optional", "description")


@dataclass(frozen=True)
class ThresholdFile:
    """What a thresholds TOML file sets; None where it is silent."""

    thresholds: tuple[Threshold, ...]
    warmup_s: float | None
    security: bool | None
    goodput_limits_ms: Mapping[str, float | None]


def _unknown_key(path: Path, where: str, key: str, known: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        f"{path}: unknown key {where}{key!r}{hint}",
        fix="known keys: " + ", ".join(known),
    )


def load_threshold_file(path: str | Path) -> ThresholdFile:
    """Read a thresholds TOML file (see docs/gate.md); ``ConfigError`` names file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read the thresholds file {path}: {exc.strerror or exc}",
            fix="give --thresholds an existing TOML file",
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for key in data:
        if key not in _FILE_KEYS:
            raise _unknown_key(path, "", key, _FILE_KEYS)
    warmup = data.get("warmup")
    warmup_s = None if warmup is None else parse_duration(warmup, f"{path}: warmup")
    security = data.get("security")
    if security is not None and not isinstance(security, bool):
        raise ConfigError(f"{path}: security must be true or false, not {security!r}")
    goodput = data.get("goodput", {})
    if not isinstance(goodput, dict):
        raise ConfigError(f"{path}: [goodput] must be a table of NAME = DURATION")
    limits: dict[str, float | None] = {}
    for name, value in goodput.items():
        if value == "off":
            limits[name] = None
        else:
            limits[name] = parse_duration(value, f"{path}: goodput.{name!r}") * 1000.0
    entries = data.get("threshold", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(
            f"{path}: threshold must be an array of tables",
            fix='write each as [[threshold]] with expression = "turn:e2e p95 < 5s"',
        )
    thresholds = tuple(_entry(path, n, entry) for n, entry in enumerate(entries, 1))
    return ThresholdFile(thresholds, warmup_s, security, limits)


def _entry(path: Path, n: int, entry: dict[str, Any]) -> Threshold:
    where = f"{path} [[threshold]] #{n}"
    for key in entry:
        if key not in _ENTRY_KEYS:
            raise _unknown_key(path, f"in [[threshold]] #{n}: ", key, _ENTRY_KEYS)
    for key in ("expression", "metric", "condition", "description"):
        if key in entry and not isinstance(entry[key], str):
            raise ConfigError(f"{where}: {key} must be a string, not {entry[key]!r}")
    for key in ("abort", "optional"):
        if key in entry and not isinstance(entry[key], bool):
            raise ConfigError(f"{where}: {key} must be true or false, not {entry[key]!r}")
    if "expression" in entry:
        if "metric" in entry or "condition" in entry:
            raise ConfigError(f"{where}: give either expression or metric + condition, not both")
        text = entry["expression"]
    elif "metric" in entry and "condition" in entry:
        text = f"{entry['metric']} {entry['condition']}"
    else:
        raise ConfigError(
            f"{where}: no threshold in it",
            fix='add expression = "turn:e2e p95 < 5s" (or metric = ... and condition = ...)',
        )
    threshold = parse_threshold(text, origin=where, description=entry.get("description", ""))
    extra = [m for m in MARKERS if entry.get(m) and not getattr(threshold, m)]
    if extra:
        # The TOML flags mean the same as the markers: reparse so abort is validated.
        threshold = parse_threshold(
            text + "".join(f" {m}" for m in extra),
            origin=where,
            description=entry.get("description", ""),
        )
    return threshold


def build_config(
    *,
    thresholds: Sequence[str] = (),
    file: str | Path | None = None,
    warmup: str | None = None,
    security: bool | None = None,
    goodput_limits: Sequence[str] = (),
) -> GateConfig:
    """The gate configuration from command-line values; the command line beats the file.

    ``security=None`` leaves it to the file (default on); ``False`` is ``--no-security-gate``.
    """
    parsed_file = load_threshold_file(file) if file else None
    given: tuple[Threshold, ...] = tuple(parse_threshold(text) for text in thresholds)
    limits: dict[str, float | None] = dict(DEFAULT_GOODPUT_MS)
    warmup_s = 0.0
    security_on = True
    if parsed_file is not None:
        given = parsed_file.thresholds + given
        limits.update(parsed_file.goodput_limits_ms)
        if parsed_file.warmup_s is not None:
            warmup_s = parsed_file.warmup_s
        if parsed_file.security is not None:
            security_on = parsed_file.security
    for text in goodput_limits:
        name, ms = parse_goodput_limit(text)
        limits[name] = ms
    if warmup is not None:
        warmup_s = parse_duration(warmup, "--warmup")
    if security is not None:
        security_on = security
    return GateConfig(
        thresholds=given,
        warmup_s=warmup_s,
        security=security_on,
        goodput_limits_ms={k: v for k, v in limits.items() if v is not None},
    )
