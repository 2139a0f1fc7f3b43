"""The WebSocket protocol, sans I/O: frames, the upgrade, token carriers, event grammars and
the turn tracker. Fed bytes and times, they return messages and verdicts; no sockets, no
Locust, no clock of their own."""
