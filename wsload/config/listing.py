"""``wsload options``: every option of every locustfile and of the reference target, grouped.

Locust prints ``--help`` before it imports a locustfile, so ``locust -f ... --help`` cannot
show the options a locustfile adds; this listing, made from the same declaration table,
is where users find them.
"""

from __future__ import annotations

import textwrap

from wsload.config.spec import GROUPS, OptionSpec

GROUP_TITLES = {
    "run": "run: every locustfile (ws_auth.py, handshakes.py, capacity.py, connections.py)",
    "gate": "gate: the CI gate of every locustfile (`wsload gate` takes the same thresholds)",
    "capacity": "capacity: the load steps of capacity.py",
    "slo": "slo: the service levels a step of capacity.py must keep (`wsload report` too)",
    "target": (
        "target: knobs of the reference target (`wsload target`, or a load run's "
        "--target-args when no --host is given)"
    ),
}


def option_table(groups: tuple[str, ...] = GROUPS) -> dict[str, tuple[OptionSpec, ...]]:
    """The declarations of ``groups``, in listing order (the target's loaded only if asked)."""
    from wsload.config.options import OPTION_SPECS

    specs = list(OPTION_SPECS)
    if "target" in groups:
        from wsload.config.target_knobs import TARGET_SPECS

        specs += TARGET_SPECS
    return {group: tuple(s for s in specs if s.group == group) for group in groups}


def describe(spec: OptionSpec) -> str:
    """One line of facts about an option: variable, default, choices, form."""
    facts = []
    if spec.env:
        facts.append(f"env {spec.env}")
    if spec.secret and spec.group != "target":
        facts.append("secret: never in the web UI, logs or results")
    elif spec.action == "append":
        facts.append("repeatable")
    elif spec.action == "store_true":
        facts.append("switch")
    elif spec.default not in (None, "") and "%(default)s" not in spec.help:
        facts.append(f"default: {spec.default}")
    if spec.choices:
        facts.append("one of " + ", ".join(map(str, spec.choices)))
    if spec.group != "target" and not spec.web_ui and not spec.secret:
        facts.append("not in the web UI")
    return "; ".join(facts)


def render_options(groups: tuple[str, ...] = GROUPS, width: int = 100) -> str:
    """The listing ``wsload options`` prints."""
    out = textwrap.wrap(
        "wsload options, by group. A run option is also set by its environment variable, or "
        "in locust.conf without the dashes; `locust -f FILE --help` lists Locust's own.",
        width,
    )
    for group, specs in option_table(groups).items():
        out += ["", *textwrap.wrap(GROUP_TITLES[group], width, subsequent_indent="  ")]
        for spec in specs:
            flag = spec.flag if spec.action == "store_true" else f"{spec.flag} {_metavar(spec)}"
            out.append(f"  {flag}")
            facts = describe(spec)
            text = spec.plain_help() + (f" [{facts}]" if facts else "")
            out += textwrap.wrap(text, width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(out) + "\n"


def _metavar(spec: OptionSpec) -> str:
    if spec.metavar:
        return spec.metavar
    if spec.choices:
        return "{" + ",".join(map(str, spec.choices)) + "}"
    return {int: "N", float: "NUMBER"}.get(spec.type, "TEXT")
