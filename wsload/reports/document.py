"""A tiny document model written out twice: as Markdown and as a self-contained HTML page.

The report is assembled once as blocks (headings, paragraphs, lists, tables, figures,
warnings) so the two files always say the same thing; no Markdown library is needed.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Table:
    """Header and string cells; ``marked`` rows are highlighted (regressions, breaches)."""

    header: list[str]
    rows: list[list[str]]
    marked: list[bool] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)  # right-aligned columns


@dataclass
class Block:
    kind: str  # h1 | h2 | p | ul | table | img | warn
    text: str = ""
    items: list[str] = field(default_factory=list)
    table: Table | None = None


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(Block("h2", text))

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def ul(self, items: list[str]) -> None:
        self.blocks.append(Block("ul", items=list(items)))

    def table(self, table: Table) -> None:
        self.blocks.append(Block("table", table=table))

    def img(self, file: str, alt: str) -> None:
        self.blocks.append(Block("img", text=file, items=[alt]))

    def warn(self, text: str) -> None:
        self.blocks.append(Block("warn", text))

    # --- Markdown -----------------------------------------------------------------------
    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            if block.kind == "h2":
                out += [f"## {block.text}", ""]
            elif block.kind == "p":
                out += [block.text, ""]
            elif block.kind == "ul":
                out += [f"- {item}" for item in block.items] + [""]
            elif block.kind == "warn":
                out += [f"> **Warning:** {block.text}", ""]
            elif block.kind == "img":
                out += [f"![{block.items[0]}]({block.text})", ""]
            elif block.kind == "table" and block.table is not None:
                out += _md_table(block.table) + [""]
        return "\n".join(out).rstrip() + "\n"

    # --- HTML ---------------------------------------------------------------------------
    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            if block.kind == "h2":
                body.append(f"<h2>{html.escape(block.text)}</h2>")
            elif block.kind == "p":
                body.append(f"<p>{_inline(block.text)}</p>")
            elif block.kind == "ul":
                items = "".join(f"<li>{_inline(item)}</li>" for item in block.items)
                body.append(f"<ul>{items}</ul>")
            elif block.kind == "warn":
                body.append(f'<p class="warn"><strong>Warning:</strong> {_inline(block.text)}</p>')
            elif block.kind == "img":
                src, alt = html.escape(block.text), html.escape(block.items[0])
                body.append(
                    f'<figure><img src="{src}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
                )
            elif block.kind == "table" and block.table is not None:
                body.append(_html_table(block.table))
        return _PAGE.format(title=html.escape(self.title), body="\n".join(body))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    numeric = table.numeric or [False] * len(table.header)
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |"]
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    marked = table.marked or [False] * len(table.rows)
    for row, mark in zip(table.rows, marked, strict=True):
        cells = [_md_cell(c) for c in row]
        if mark:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _inline(text: str) -> str:
    """Escape, then turn Markdown ``**bold**`` and `` `code` `` into HTML."""
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_table(table: Table) -> str:
    numeric = table.numeric or [False] * len(table.header)
    head = "".join(
        f'<th class="{"num" if n else ""}">{html.escape(h)}</th>'
        for h, n in zip(table.header, numeric, strict=True)
    )
    rows = []
    marked = table.marked or [False] * len(table.rows)
    for row, mark in zip(table.rows, marked, strict=True):
        cells = "".join(
            f'<td class="{"num" if n else ""}">{_inline(c)}</td>'
            for c, n in zip(row, numeric, strict=True)
        )
        rows.append(f'<tr class="{"marked" if mark else ""}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #222; line-height: 1.45; }}
h1 {{ font-size: 1.6rem; }} h2 {{ font-size: 1.25rem; margin-top: 2.2rem;
       border-bottom: 1px solid #ddd; padding-bottom: .2rem; }}
table {{ border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }}
th, td {{ border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }}
th {{ background: #f4f4f4; }} td.num, th.num {{ text-align: right;
       font-variant-numeric: tabular-nums; }}
tr.marked td {{ background: #fde2e1; font-weight: 600; }}
.warn {{ background: #fff4e5; border-left: 4px solid #e8890c; padding: .5rem .8rem; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #666; font-size: .85rem; }}
code {{ background: #f4f4f4; padding: 0 .2rem; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
