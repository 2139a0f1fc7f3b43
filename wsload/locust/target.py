"""The reference target started inside the Locust process when no ``--host`` is given."""

from __future__ import annotations

import atexit
import logging
import secrets

from locust.env import Environment

from wsload.config.options import RunOptions
from wsload.errors import ConfigError
from wsload.locust.process import PROCESS

log = logging.getLogger("wsload")


def start_embedded_target(environment: Environment, options: RunOptions) -> None:
    """Start it on a free loopback port with a generated secret (unless one was given) and
    point the users at it; its knobs (``--target-args``) apply now, for the process."""
    from wsload.target import start_target

    secret = options.jwt_secret or secrets.token_urlsafe(32)
    if environment.parsed_options is not None:
        environment.parsed_options.jwt_secret = secret  # shipped to workers with the options
    args = tuple(options.target_args)
    try:
        PROCESS.target = start_target(list(args), secret=secret)
    except RuntimeError as exc:
        raise ConfigError(
            f"the embedded reference target did not start: {exc}",
            fix="check --target-args (run `wsload target --help` for the knobs)",
        ) from None
    PROCESS.target_args = args
    atexit.register(stop_embedded_target)
    environment.host = PROCESS.target.url
    if environment.parsed_options is not None:
        environment.parsed_options.host = PROCESS.target.url
    log.info("no --host given: started the reference target at %s", PROCESS.target.url)


def stop_embedded_target() -> None:
    if PROCESS.target is not None:
        PROCESS.target.stop()
        PROCESS.target = None
