"""The page builder of the reports: one self-contained HTML page (no scripts, no external style sheets, no
network references), everything escaped. Numbers in tables are written with 4 decimals."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from affectfuse._paths import safe_name

__all__ = ["Page", "fmt", "safe_name"]

CSS = """
body{font-family:-apple-system,"Segoe UI","Noto Sans",Helvetica,Arial,"Noto Sans CJK SC","Noto Sans CJK JP",
     "Hiragino Sans","PingFang SC","Microsoft YaHei","Malgun Gothic","Noto Sans Arabic","Noto Sans Devanagari",
     sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#222;line-height:1.45;overflow-wrap:anywhere}
.scroll{max-width:100%;overflow-x:auto}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:6px}
h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #eee;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px 0;font-size:0.92em}
td{overflow-wrap:normal;word-break:normal}
td.text{text-align:left;max-width:40em;overflow-wrap:anywhere}
th,td{border:1px solid #ccc;padding:3px 9px;text-align:right}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:12px 0 22px 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.9em;color:#555}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:8px;overflow-x:auto;font-size:0.85em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}
.muted{color:#777;font-size:0.9em}
"""


# -- the page -------------------------------------------------------------------------------------
class Page:
    """A small HTML page builder (everything escaped): headings, notes, tables, figures."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.images: list[str] = []

    def h2(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def p(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<div class="note">{html.escape(text)}</div>')

    def pre(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def link(self, href: str, text: str) -> None:
        self.parts.append(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a></p>')

    def table(self, header: Sequence[Any] | None, rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
        out = ['<div class="scroll"><table>']  # a wide table scrolls inside the page, never widens it
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        if header is not None:
            out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
        for r in rows:
            out.append("<tr>" + "".join(_cell(v) for v in r) + "</tr>")
        out.append("</table></div>")
        self.parts.append("".join(out))

    def img(self, src: str, caption: str) -> None:
        self.images.append(src)
        self.parts.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def render(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{html.escape(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.parts) + "\n</body>\n</html>\n")

    def write(self, path: Path) -> Path:
        path.write_text(self.render(), encoding="utf-8")
        return path


def _cell(v: Any) -> str:
    """A ``<td>``: long free text (paths, messages) left-aligned and wrapped, the rest as :func:`fmt` writes it."""
    text = fmt(v)
    cls = ' class="text"' if isinstance(v, str) and len(v) > 24 else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def fmt(v: Any) -> str:
    """A table cell: None / non-finite → "–", booleans → yes / no, floats with 4 decimals."""
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "–" if not np.isfinite(v) else f"{float(v):.4f}"
    return str(v)
