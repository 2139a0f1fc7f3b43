"""An event grammar inferred from recorded turns, in the profile's grammar syntax.

Each turn's event names are compressed (a run of one name becomes ``name+``, a repeated
pair or triple becomes ``(a b)+``), then the turns are aligned on their longest common
subsequence: what every turn has is required, what only some have is optional (``?``, or
``*`` when it repeats). The result is checked against every recorded turn; when the
alignment cannot express them all, the turns themselves become alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsload.protocol.grammar import Grammar


@dataclass(frozen=True)
class Token:
    """A name, or a group of names (``key`` has more than one), possibly repeated."""

    key: tuple[str, ...]
    repeat: bool = False
    inner_repeat: tuple[bool, ...] = ()  # per name of a group: repeated inside the group

    def render(self, optional: bool) -> str:
        if len(self.key) == 1:
            text = self.key[0]
        else:
            names = [
                n + ("+" if r else "") for n, r in zip(self.key, self.inner_repeat, strict=True)
            ]
            text = "(" + " ".join(names) + ")"
        if self.repeat:
            return text + ("*" if optional else "+")
        return text + ("?" if optional else "")


def _runs(names: list[str]) -> list[Token]:
    out: list[Token] = []
    for name in names:
        if out and out[-1].key == (name,):
            out[-1] = Token((name,), repeat=True)
        else:
            out.append(Token((name,)))
    return out


def _groups(tokens: list[Token]) -> list[Token]:
    """Collapse tandem repeats of two or three tokens into one repeated group token."""
    changed = True
    while changed:
        changed = False
        for size in (2, 3):
            i = 0
            while i + 2 * size <= len(tokens):
                unit = tokens[i : i + size]
                if all(len(t.key) == 1 for t in unit) and tokens[i + size : i + 2 * size] == unit:
                    end = i + 2 * size
                    while tokens[end : end + size] == unit:
                        end += size
                    key = tuple(t.key[0] for t in unit)
                    group = Token(key, repeat=True, inner_repeat=tuple(t.repeat for t in unit))
                    tokens = tokens[:i] + [group] + tokens[end:]
                    changed = True
                i += 1
    return tokens


def _fold_known_groups(tokens: list[Token], groups: set[tuple[str, ...]]) -> list[Token]:
    """A single occurrence of a group another turn repeats becomes that group (once)."""
    for key in sorted(groups, key=len, reverse=True):
        size = len(key)
        i = 0
        while i + size <= len(tokens):
            window = tokens[i : i + size]
            if all(len(t.key) == 1 for t in window) and tuple(t.key[0] for t in window) == key:
                inner = tuple(t.repeat for t in window)
                tokens = tokens[:i] + [Token(key, inner_repeat=inner)] + tokens[i + size :]
            i += 1
    return tokens


def _lcs(a: list[tuple[str, ...]], b: list[tuple[str, ...]]) -> list[tuple[int, int]]:
    rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            rows[i][j] = (
                rows[i + 1][j + 1] + 1 if a[i] == b[j] else max(rows[i + 1][j], rows[i][j + 1])
            )
    pairs, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif rows[i + 1][j] >= rows[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


@dataclass
class _Slot:
    token: Token
    seen: int  # in how many turns
    repeat: bool
    inner: tuple[bool, ...]


def _merge(slots: list[_Slot], tokens: list[Token]) -> list[_Slot]:
    pairs = _lcs([s.token.key for s in slots], [t.key for t in tokens])
    out: list[_Slot] = []
    i = j = 0
    for a, b in [*pairs, (len(slots), len(tokens))]:
        out.extend(slots[i:a])
        out.extend(_Slot(t, 1, t.repeat, t.inner_repeat) for t in tokens[j:b])
        if a < len(slots) and b < len(tokens):
            slot, token = slots[a], tokens[b]
            inner = tuple(x or y for x, y in zip(slot.inner, token.inner_repeat, strict=False))
            out.append(_Slot(slot.token, slot.seen + 1, slot.repeat or token.repeat, inner))
        i, j = a + 1, b + 1
    return out


def infer_sequence(turns: list[list[str]]) -> str:
    """A grammar accepting every turn in ``turns`` (lists of event names, each non-empty)."""
    compressed = [_groups(_runs(names)) for names in turns]
    groups = {t.key for tokens in compressed for t in tokens if len(t.key) > 1}
    compressed = [_fold_known_groups(tokens, groups) for tokens in compressed]
    slots = [_Slot(t, 1, t.repeat, t.inner_repeat) for t in compressed[0]]
    for tokens in compressed[1:]:
        slots = _merge(slots, tokens)
    parts = []
    for slot in slots:
        token = Token(slot.token.key, slot.repeat, slot.inner)
        parts.append(token.render(optional=slot.seen < len(turns)))
    text = " ".join(parts)
    if all(accepts(text, names) for names in turns):
        return text
    options = sorted({" ".join(t.render(False) for t in tokens) for tokens in compressed})
    return "(" + " | ".join(options) + ")" if len(options) > 1 else options[0]


def accepts(text: str, names: list[str]) -> bool:
    """Whether the grammar ``text`` accepts the whole sequence ``names``."""
    return Grammar(text).matches(names)
