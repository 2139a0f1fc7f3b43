"""``HandshakeUser``: connect, wait for the ack, close, again, each time with a fresh token.

No chat: it measures handshake and auth alone. With ``--storm S`` every user (in every
process: the moments are wall-clock multiples of S) connects at the same instant once per
S seconds, so handshake latency and auth failures are seen against the number of
concurrent handshakes, which each sample keeps in its ``inflight`` column.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust import User, task

from wsload.locust.credentials import UserCredentials
from wsload.locust.runtime import Runtime, runtime_for
from wsload.net.client import ConnectError, Connection, attempt_record, connect
from wsload.protocol.carrier import place
from wsload.run.records import Who


class HandshakeUser(User):
    """One handshake per step: TCP, upgrade, auth ack, close."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.rt: Runtime | None = None
        self.index = 0
        self.subject = ""
        self.attempts = 0
        self.creds: UserCredentials | None = None

    def wait_time(self) -> float:
        return 0.0

    def on_start(self) -> None:
        self.rt = runtime_for(self.environment)
        self.index, self.subject = self.rt.new_user()
        if self.rt.options.token_source != "mint":  # tokens wsload cannot mint: fetch them
            self.creds = UserCredentials(self, self.rt, self.index, self.subject)
            self.creds.acquire()

    @task
    def handshake(self) -> None:
        rt = self.rt
        storm = rt.options.storm_interval_s
        if storm > 0:
            now = time.time()
            gevent.sleep(storm - (now % storm))  # the next wave, the same instant everywhere
        self.attempts += 1
        session_id = f"{rt.node}-{self.index}-{self.attempts}"
        creds = self.creds
        if creds is None:
            token = rt.minter.mint(self.subject)
            placement = place(rt.profile.auth, rt.url, token, carrier=rt.options.carrier)
            expected = self.subject
        else:
            due = creds.due_in()
            if creds.token is None or (due is not None and due <= 0):
                creds.refresh() if creds.token else creds.acquire()
            placement = creds.placement()
            expected = creds.expected_subject
            if placement is None:
                return
        rt.inflight_handshakes += 1
        inflight = rt.inflight_handshakes
        try:
            outcome: Connection | ConnectError = connect(
                rt.url,
                rt.profile,
                placement,
                expected_subject=expected,
                options=rt.client_options,
            )
        except ConnectError as err:
            outcome = err
        finally:
            rt.inflight_handshakes -= 1
        record, conn = attempt_record(outcome, Who(self.index, self.subject, session_id), inflight)
        rt.record(record)
        if conn is not None:
            conn.close(timeout=1.0)
