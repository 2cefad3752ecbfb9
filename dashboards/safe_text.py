"""Text from spans, shown as text: what agents send (names, ids, messages, undo targets) never becomes
Markdown, a link, an image, a color, an icon, an emoji, math or HTML on a page or in a chart.

Streamlit renders Markdown in ``st.markdown``, ``st.caption``, the alert boxes, titles, headers, and in
the labels of expanders, buttons, page links and metrics and in ``st.table`` cells (GitHub-flavored
Markdown, plus ``:color[...]`` and ``:material/...:`` directives, ``:emoji:`` shortcodes and ``$math$``).
Plotly renders a subset of HTML (``<a href>``, ``<b>``, ``<br>``...) in hover text, legends and tick
labels. Every value that came from a span goes through one of these on its way to the screen:

- ``md``: for any Markdown context. Backslash-escapes every ASCII punctuation character (CommonMark:
  an escaped punctuation character is always literal), so no emphasis, code, link, image, HTML, table,
  heading, list, directive or math can start; puts line breaks on one line; and, because GitHub's
  literal autolinks and emoji shortcodes are found in the text *after* escapes are resolved, breaks
  ``scheme://``, ``www.``, ``user@host`` and ``:name:`` with an invisible WORD JOINER.
- ``code``: an inline code span holding the text as it is, whatever backticks it contains.
- ``html``: for Plotly text (hover templates' data, legend names, category ticks).

Selectbox options, text inputs, ``st.text``, ``st.code``, ``st.json`` and ``st.dataframe`` cells are
shown as plain text by Streamlit: values go there unchanged.
"""

from __future__ import annotations

import html as _html
import re

WORD_JOINER = "\u2060"  # zero width, no line break: invisible, but no autolink or shortcode survives it
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_AUTOLINK_STARTS = re.compile(r"(?<=:)(?=//)|(?i:(?<=www)(?=\.))|(?=@)")  # scheme://, www., user@host
_SHORTCODE_STARTS = re.compile(r"(?<=:)(?=[\w+-][\w+-]*:)")  # :smile:, :+1:, :material_icon:
_BACKTICKS = re.compile(r"`+")


def _one_line(text: object) -> str:
    value = "" if text is None else str(text)
    return _CONTROL.sub("", _LINE_BREAKS.sub(" ", value))


def md(text: object) -> str:
    """``text`` as Markdown that Streamlit shows literally, on one line (line breaks become spaces)."""
    value = _one_line(text)
    value = _AUTOLINK_STARTS.sub(WORD_JOINER, value)
    value = _SHORTCODE_STARTS.sub(WORD_JOINER, value)
    return _PUNCTUATION.sub(r"\\\1", value)


def code(text: object) -> str:
    """``text`` as an inline code span (Markdown): shown as is, in a monospace font, on one line.

    The fence is one backtick longer than the longest run of backticks in the text, and padded with
    spaces, so no backtick in the text can close it (CommonMark code spans). Nothing is parsed inside
    a code span, but Streamlit rewrites ``:material/`` in the whole source first: that one is broken.
    """
    value = _one_line(text).replace(":material/", f":{WORD_JOINER}material/")  # Streamlit rewrites those anywhere
    longest = max((len(run) for run in _BACKTICKS.findall(value)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {value} {fence}" if value else "` `"


def html(text: object) -> str:
    """``text`` for Plotly's HTML-like labels: ``<``, ``>`` and ``&`` as entities, shown as themselves."""
    return _html.escape("" if text is None else str(text), quote=False)


def cells(values: list[object]) -> list[str]:
    """Values for an ``st.table`` column (its cells are Markdown)."""
    return [md(value) for value in values]


def table(rows: dict[str, list[object]]) -> dict[str, list[str]]:
    """Columns for ``st.table`` with every cell shown as text (the column names are the caller's own)."""
    return {name: cells(values) for name, values in rows.items()}


def plain_text(markdown: str) -> str:
    """What a reader sees of ``md`` output (its escapes and word joiners dropped): for tests and comparisons."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")
