"""Model Markdown to safe HTML, and the report's score chart as SVG."""

from __future__ import annotations

import re
from html import escape

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_TAGS = {
    "p", "br", "strong", "em", "b", "i", "ul", "ol", "li", "blockquote",
    "h2", "h3", "h4", "h5", "h6", "code", "pre", "hr", "a",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}}
# A report's own sections sit under the step's "Your report" heading (h2).
REPORT_HEADINGS = 3
_HEADING_TAG = re.compile(r"<(/?)h([1-6])>")


def _level(level: int, top: int) -> int:
    return min(6, top + max(0, level - 2))


def markdown(text: str, *, top: int = 2) -> Markup:
    """Untrusted Markdown: raw HTML off in the parser, then sanitised. Its headings start at
    level `top` (a `#` and a `##` both become `h{top}`, deeper ones follow), so they sit below
    the page's own: a report's sections are h3 under its "Your report" h2."""
    rendered = _MARKDOWN.render(text.replace("\r\n", "\n"))
    rendered = _HEADING_TAG.sub(lambda tag: f"<{tag[1]}h{_level(int(tag[2]), top)}>", rendered)
    clean = nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)


ROW_HEIGHT = 46
BAR_WIDTH = 300
VALUE_WIDTH = 50


NOT_ENOUGH = "not enough to go on"


def score_chart(scores: list[tuple[str, int | None]]) -> Markup:
    """A horizontal bar per dimension, 0 to 10, readable without colour and in print; a
    dimension without a score gets no bar, and says so in words across its empty track.

    Each label sits above its bar, not beside it: the chart scales to the page's width, and a
    label column beside the bars made the labels 7-8 px tall on a phone."""
    height = ROW_HEIGHT * len(scores) + 6
    width = BAR_WIDTH + VALUE_WIDTH
    rows = []
    for index, (label, score) in enumerate(scores):
        y = 6 + index * ROW_HEIGHT
        head = f'<text x="0" y="{y + 14}" class="chart-label">{escape(label)}</text>'
        track = (
            f'<rect x="0" y="{y + 20}" width="{BAR_WIDTH}" height="16" rx="3" class="chart-track"/>'
        )
        value_at = f'x="{BAR_WIDTH + 10}" y="{y + 33}"'
        if score is None:
            rows.append(
                f'<g class="chart-row chart-row-none">{head}{track}'
                f'<text x="8" y="{y + 33}" class="chart-none">{NOT_ENOUGH}</text>'
                f'<text {value_at} class="chart-value">\u2013</text></g>'
            )
            continue
        filled = BAR_WIDTH * max(0, min(10, score)) / 10
        rows.append(
            f'<g class="chart-row">{head}{track}'
            f'<rect x="0" y="{y + 20}" width="{filled:.0f}" height="16" rx="3" '
            f'class="chart-bar"/>'
            f'<text {value_at} class="chart-value">{score}/10</text></g>'
        )
    title = "; ".join(
        f"{label}: {NOT_ENOUGH}" if score is None else f"{label}: {score} of 10"
        for label, score in scores
    )
    return Markup(
        f'<svg class="score-chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" aria-label="Scores">'
        f"<title>{escape(title)}</title>{''.join(rows)}</svg>"
    )
