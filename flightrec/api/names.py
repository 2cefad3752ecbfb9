"""Names in API paths: an agent, flow, object or plan may be called anything.

Routes match on the decoded path, where a name's encoded ``/`` (``%2F``) is a plain ``/``
and its line breaks are line breaks. A ``{param:text}`` parameter takes any non-empty text
across both, so ``/api/controls/agents/a%2Fb/pause`` pauses agent ``a/b``: the segments
fixed after the name (``/pause``) tell where it ends. Clients encode each segment whole
(``flightrec.sdk.api_path``).
"""

from __future__ import annotations

from urllib.parse import unquote

from fastapi import Request
from starlette.convertors import Convertor, register_url_convertor


class TextConvertor(Convertor[str]):
    """Any non-empty text: slashes and line breaks included (``path`` stops at a line break)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", TextConvertor())


def split_as_sent(request: Request, first: str, rest: str) -> tuple[str, str]:
    """Two names in a path, a one-segment ``first`` then a ``text`` ``rest``, split where the client split them.

    The decoded path reads ``a%2Fb/c`` as first ``a``, rest ``b/c``; the raw path still has the
    encoded slash inside the first segment. The route's fixed last segment (``/story``) is
    dropped, then the raw segments are taken from the end until they spell ``first/rest``.
    """
    raw: bytes = request.scope.get("raw_path") or b""
    segments = raw.decode("latin-1").split("/")[:-1]
    whole = f"{first}/{rest}"
    for index in range(len(segments) - 2, 0, -1):
        if unquote("/".join(segments[index:])) == whole:
            return unquote(segments[index]), unquote("/".join(segments[index + 1 :]))
    return first, rest
