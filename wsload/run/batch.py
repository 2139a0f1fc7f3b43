"""A batch of records from one generator process, on their way to the results.

The users column of the results says how many users the process ran when a record was
taken. That count changes a few times a run while records come by the thousand a second,
so a batch keeps it as a change mark between records instead of a field on each.
"""

from __future__ import annotations

from collections.abc import Iterator

from wsload.run.records import Record


class Batch:
    """Records of one process (``node``) in the order taken, with the user count of each."""

    __slots__ = ("items", "node", "users")

    def __init__(self, node: str) -> None:
        self.node = node
        self.items: list[Record | int] = []  # an int: the user count from here on
        self.users = -1

    def add(self, record: Record, users: int) -> None:
        if users != self.users:
            self.users = users
            self.items.append(users)
        self.items.append(record)

    def __bool__(self) -> bool:
        return bool(self.items)

    def with_users(self) -> Iterator[tuple[int, Record]]:
        """(user count, record) pairs, in order."""
        users = 0
        for item in self.items:
            if type(item) is int:
                users = item
            else:
                yield users, item  # type: ignore[misc]

    def records(self) -> Iterator[Record]:
        for item in self.items:
            if type(item) is not int:
                yield item  # type: ignore[misc]
