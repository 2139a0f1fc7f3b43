"""wsload's options on Locust's parser: command line, environment, ``locust.conf``, and
the web UI form for those it may edit (``spec.web_ui``)."""

from __future__ import annotations

from typing import Any

from wsload.config.options import OPTION_SPECS

REQUEST_EVENTS_FLAG = "--request-events"
REQUEST_EVENTS_ENV = "WSLOAD_REQUEST_EVENTS"
# Knobs that only apply when the process starts (the embedded target's): never in the form.
START_UP_ONLY = frozenset({"target_args"})


def offered_in_web_ui(spec: Any) -> bool:
    """Whether the web UI form edits this option.

    Locust writes a UI argument's value into the page source even when it masks the
    input, so secrets stay off the web UI (they come from env or ``locust.conf``);
    repeatable options too (the form edits one value per option), and start-up-only knobs.
    """
    default = not spec.secret and spec.action != "append" and spec.dest not in START_UP_ONLY
    return bool(getattr(spec, "web_ui", default))


def add_options(parser: Any) -> None:
    for spec in OPTION_SPECS:
        kwargs: dict[str, Any] = {
            "default": spec.default,
            "env_var": spec.env,
            "help": f"{spec.help} [env {spec.env}]",
            "include_in_web_ui": offered_in_web_ui(spec),
        }
        if spec.action:
            kwargs["action"] = spec.action
        else:
            kwargs["type"] = spec.type
        if spec.choices:
            kwargs["choices"] = spec.choices
        parser.add_argument(spec.flag, **kwargs)
    parser.add_argument(
        REQUEST_EVENTS_FLAG,
        action="store_true",
        default=False,
        env_var=REQUEST_EVENTS_ENV,
        include_in_web_ui=False,
        help="fire a Locust request event for each of wsload's samples, for plugins and "
        "--otel that listen to them (slower; by default wsload logs its samples into "
        f"Locust's stats directly) [env {REQUEST_EVENTS_ENV}]",
    )
