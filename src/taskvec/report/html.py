"""The page: sections of text, tables and figures, written as one HTML file with the figures embedded
(base64 PNG), no script and no external file, so it opens offline by double-click."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
caption { caption-side: top; text-align: left; font-size: .9em; padding: .2em 0; }
figure { margin: 1.2em 0; border: 1px solid #ddd; padding: .6em; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: .85em; color: #444; }
pre { background: #f6f6f6; padding: .4em .6em; overflow-x: auto; white-space: pre-wrap; font-size: .85em; }
.note { color: #8a4b00; } .verdict-no { color: #a00; } .verdict-yes { color: #060; }
nav ul { columns: 2; }
pre.wide { white-space: pre; } .scroll { overflow-x: auto; } figure img.wide { max-width: none; }
"""


@dataclass(frozen=True)
class Figure:
    """A PNG with what it shows, the command that makes it again, and the files it read."""

    path: Path
    title: str
    command: str
    reads: list[str]
    caption: str = ""


@dataclass
class Section:
    """A titled part of the page: HTML fragments in order."""

    title: str
    parts: list[str] = field(default_factory=list)

    def text(self, words: str, css: str = "") -> None:
        self.parts.append(
            f'<p class="{css}">{html.escape(words)}</p>' if css else f"<p>{html.escape(words)}</p>"
        )

    def table(self, frame: pd.DataFrame, caption: str = "") -> None:
        self.parts.append(table_html(frame, caption))

    def figure(self, figure: Figure) -> None:
        self.parts.append(figure_html(figure))

    def code(self, text: str, wide: bool = False) -> None:
        """Preformatted text; `wide` (a printed table) keeps its lines and scrolls, not wrapping them."""
        css = ' class="wide"' if wide else ""
        self.parts.append(f"<pre{css}>{html.escape(text)}</pre>")


def table_html(frame: pd.DataFrame, caption: str = "") -> str:
    """A DataFrame as an HTML table: numbers right-aligned with 3 decimals, text left-aligned, escaped."""

    def cell(value: object, tag: str) -> str:
        if isinstance(value, float):
            shown, css = ("-" if value != value else f"{value:.3f}"), ""
        else:
            shown, css = str(value), ' class="text"'
        return f"<{tag}{css}>{html.escape(shown)}</{tag}>"

    head = "".join(f'<th class="text">{html.escape(str(c))}</th>' for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(cell(v, "td") for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


WIDE_PX = (
    2400  # a figure wider than this (a compare of many sessions) is unreadable squeezed to the page
)


def png_width(data: bytes) -> int:
    """The width in pixels from a PNG's IHDR chunk (0 if the bytes are not a PNG)."""
    return int.from_bytes(data[16:20], "big") if data[:8] == b"\x89PNG\r\n\x1a\n" else 0


def figure_html(figure: Figure) -> str:
    raw = figure.path.read_bytes()
    data = base64.b64encode(raw).decode()
    width = png_width(raw)
    img = f'alt="{html.escape(figure.title)}" src="data:image/png;base64,{data}"'
    if (
        width > WIDE_PX
    ):  # shown at half its pixels, scrolled sideways, instead of shrunk to the page width
        img = f'<div class="scroll"><img class="wide" width="{width // 2}" {img}></div>'
    else:
        img = f"<img {img}>"
    reads = "".join(f"<li><code>{html.escape(r)}</code></li>" for r in figure.reads)
    caption = f"<p>{html.escape(figure.caption)}</p>" if figure.caption else ""
    return (
        f"<figure>{img}<figcaption><b>{html.escape(figure.title)}</b>{caption}"
        f"<p>Made by:</p><pre>{html.escape(figure.command)}</pre>"
        f"<p>Read:</p><ul>{reads}</ul></figcaption></figure>"
    )


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())


def write_page(path: Path, title: str, intro: list[str], sections: list[Section]) -> Path:
    """Write the page; `intro`'s last entry is shown as code (the command that remakes the page);
    sections without parts are left out."""
    kept = [s for s in sections if s.parts]
    nav = "".join(
        f'<li><a href="#{_anchor(s.title)}">{html.escape(s.title)}</a></li>' for s in kept
    )
    body = "".join(
        f'<section id="{_anchor(s.title)}"><h2>{html.escape(s.title)}</h2>{"".join(s.parts)}</section>'
        for s in kept
    )
    lead = "".join(f"<p>{html.escape(p)}</p>" for p in intro[:-1])
    lead += f"<pre>{html.escape(intro[-1])}</pre>" if intro else ""
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{lead}"
        f"<p>Written {when} by <code>taskvec report</code>.</p><nav><ul>{nav}</ul></nav>{body}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
