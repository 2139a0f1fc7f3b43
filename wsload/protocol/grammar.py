"""The event grammar of one agent turn, as a small regular language over event names.

A profile writes it as text, e.g.
``agent_started agent_thinking+ (tool_executing tool_completed)* agent_completed``:
names in sequence, ``|`` for alternatives, ``( )`` for groups and the suffixes ``+``,
``*`` and ``?``. It is compiled once into a Thompson NFA so that a turn can be followed
event by event: the tracker needs to know at each event whether the turn can still become
valid, not only whether a finished turn matches.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_.:\-]*)|(?P<op>[()|+*?]))")


class GrammarError(ValueError):
    """A grammar text that does not parse; ``position`` is the 0-based offending character."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.position = position
        pointer = " " * position + "^"
        super().__init__(f"{message} at character {position + 1}:\n    {text}\n    {pointer}")


@dataclass
class _State:
    # An epsilon-free transition on ``label`` to ``target``, plus epsilon moves.
    label: str | None = None
    target: int | None = None
    epsilon: list[int] = field(default_factory=list)


class Grammar:
    """A compiled event grammar: feed it event names, ask whether it accepts or can go on."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._states: list[_State] = []
        self._pos = 0
        self._tokens = self._tokenize(text)
        if not self._tokens:
            raise GrammarError("the grammar is empty", text, 0)
        start, end = self._parse_alternation()
        if self._pos < len(self._tokens):
            _kind, value, at = self._tokens[self._pos]
            raise GrammarError(f"unexpected {value!r}", text, at)
        self._start = start
        self._accept = end
        self.names: frozenset[str] = frozenset(s.label for s in self._states if s.label is not None)
        self.initial: frozenset[int] = self._closure({start})
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}
        self._repeatable: dict[str, bool] = {}

    # parsing -------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[tuple[str, str, int]]:
        tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None:
                at = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise GrammarError(f"unexpected character {text[at]!r}", text, at)
            kind = "name" if match.group("name") else "op"
            value = match.group(kind)
            tokens.append((kind, value, match.start(kind)))
            pos = match.end()
        return tokens

    def _new(self) -> int:
        self._states.append(_State())
        return len(self._states) - 1

    def _peek(self) -> tuple[str, str, int] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _parse_alternation(self) -> tuple[int, int]:
        branches = [self._parse_sequence()]
        while (tok := self._peek()) is not None and tok[1] == "|":
            self._pos += 1
            branches.append(self._parse_sequence())
        if len(branches) == 1:
            return branches[0]
        start, end = self._new(), self._new()
        for b_start, b_end in branches:
            self._states[start].epsilon.append(b_start)
            self._states[b_end].epsilon.append(end)
        return start, end

    def _parse_sequence(self) -> tuple[int, int]:
        parts: list[tuple[int, int]] = []
        while (tok := self._peek()) is not None and tok[1] not in ("|", ")"):
            parts.append(self._parse_repeat())
        if not parts:
            at = tok[2] if tok else len(self.text)
            raise GrammarError("expected an event name or '('", self.text, at)
        for (_, a_end), (b_start, _) in itertools.pairwise(parts):
            self._states[a_end].epsilon.append(b_start)
        return parts[0][0], parts[-1][1]

    def _parse_repeat(self) -> tuple[int, int]:
        start, end = self._parse_atom()
        while (tok := self._peek()) is not None and tok[1] in ("+", "*", "?"):
            self._pos += 1
            new_start, new_end = self._new(), self._new()
            self._states[new_start].epsilon.append(start)
            self._states[end].epsilon.append(new_end)
            if tok[1] in ("+", "*"):
                self._states[end].epsilon.append(start)
            if tok[1] in ("*", "?"):
                self._states[new_start].epsilon.append(new_end)
            start, end = new_start, new_end
        return start, end

    def _parse_atom(self) -> tuple[int, int]:
        tok = self._peek()
        if tok is None:
            raise GrammarError("expected an event name or '('", self.text, len(self.text))
        kind, value, at = tok
        self._pos += 1
        if kind == "name":
            start, end = self._new(), self._new()
            self._states[start].label = value
            self._states[start].target = end
            return start, end
        if value == "(":
            inner = self._parse_alternation()
            close = self._peek()
            if close is None or close[1] != ")":
                where = close[2] if close else len(self.text)
                raise GrammarError("missing ')'", self.text, where)
            self._pos += 1
            return inner
        raise GrammarError(f"unexpected {value!r}", self.text, at)

    # running -------------------------------------------------------------------------
    def _closure(self, states: set[int]) -> frozenset[int]:
        stack = list(states)
        seen = set(states)
        while stack:
            for nxt in self._states[stack.pop()].epsilon:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return frozenset(seen)

    def step(self, states: frozenset[int], name: str) -> frozenset[int]:
        """States after one more event; empty when no valid turn continues this way.

        Memoised: the state sets a turn goes through are few, so after the first turns
        this is one dict lookup (the NFA becomes a DFA lazily).
        """
        key = (states, name)
        cached = self._steps.get(key)
        if cached is not None:
            return cached
        result = self._step(states, name)
        if len(self._steps) < 100_000:
            self._steps[key] = result
        return result

    def _step(self, states: frozenset[int], name: str) -> frozenset[int]:
        moved = {
            s.target
            for i in states
            if (s := self._states[i]).label == name and s.target is not None
        }
        return self._closure(moved) if moved else frozenset()

    def accepts(self, states: frozenset[int]) -> bool:
        """Whether the events fed so far form a complete valid turn."""
        return self._accept in states

    def expected(self, states: frozenset[int]) -> frozenset[str]:
        """The event names that may come next."""
        return frozenset(s.label for i in states if (s := self._states[i]).label is not None)

    def ahead(self, states: frozenset[int]) -> frozenset[int]:
        """Every state reachable from ``states`` by skipping any number of events."""
        seen = set(states)
        stack = list(states)
        while stack:
            s = self._states[stack.pop()]
            nexts = list(s.epsilon)
            if s.target is not None:
                nexts.append(s.target)
            for nxt in nexts:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return frozenset(seen)

    def repeatable(self, name: str) -> bool:
        """Whether some valid turn holds ``name`` more than once."""
        if name not in self._repeatable:
            self._repeatable[name] = self._is_repeatable(name)
        return self._repeatable[name]

    def _is_repeatable(self, name: str) -> bool:
        after = self.ahead(
            frozenset().union(
                *(
                    self.step(frozenset({i}), name)
                    for i, s in enumerate(self._states)
                    if s.label == name
                )
            )
        )
        return name in self.expected(after)

    def matches(self, names: list[str]) -> bool:
        """Whether a whole sequence of event names is one valid turn."""
        states = self.initial
        for name in names:
            states = self.step(states, name)
            if not states:
                return False
        return self.accepts(states)
