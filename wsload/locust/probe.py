"""``SecurityProbeUser``: proves, while the load runs, that the server enforces auth.

One user by default (``--probe-users``), cycling through every negative probe of
``wsload.net.probes``, each over a fresh connection. A refused auth probe is a success sample
named ``probe:<name>`` whose detail says how it was refused; an accepted one fails with
``auth_not_enforced``, which the default security gate turns into a failed run. The
handshake-conformance probes are ``conformance:<name>`` samples (``handshake_not_conformant``
when accepted), reported and gateable but not part of the security gate.
"""

from __future__ import annotations

import random
import time
from typing import Any

from locust import User, task

from wsload.locust.credentials import UserCredentials
from wsload.locust.runtime import Runtime, runtime_for
from wsload.net.probes import applicable_probes, run_probe, sample_kind, stats_name
from wsload.run.records import ProbeRecord, Who


class SecurityProbeUser(User):
    """Cycles through the negative auth probes; the glue sets how many run (0: none)."""

    fixed_count = 1

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.rt: Runtime | None = None
        self.index = 0
        self.subject = ""
        self._next = 0
        self._probes: tuple[str, ...] = ()

    def wait_time(self) -> float:
        return self.rt.options.probe_interval_s if self.rt else 1.0

    def on_start(self) -> None:
        self.rt = runtime_for(self.environment)
        self.index, self.subject = self.rt.new_user()
        sample = None
        if self.rt.minter is None:  # tokens from elsewhere: probes start from a real one
            creds = UserCredentials(self, self.rt, self.index, self.subject, borrowed=True)
            sample = creds.token if creds.acquire() else None
        self._probes = applicable_probes(self.rt.profile, self.rt.probe_tokens(sample))
        self._next = random.randrange(len(self._probes))  # probe users spread over probes

    @task
    def probe(self) -> None:
        rt = self.rt
        name = self._probes[self._next % len(self._probes)]
        self._next += 1
        started = time.time()
        result = run_probe(
            name, rt.profile, rt.url, rt.probe_tokens(), self.subject, rt.client_options
        )
        who = Who(self.index, self.subject)
        rt.record(ProbeRecord(started, who, stats_name(name), sample_kind(name), result))
