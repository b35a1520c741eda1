"""A push's body split into its metadata and its pictures.

Hikvision sends an event with pictures as ``multipart/form-data`` (newer firmware,
JSON or XML first, then ``image/jpeg`` parts) or ``multipart/mixed`` (the
alert-stream framing, RFC 2046); a push without a picture is a bare XML or JSON
body. Dahua's picture pushes are multipart too, its plain ones JSON or its
``Code=...;action=...`` text. Both multipart kinds share one framing (boundary lines,
part headers) and are read with python-multipart's streaming parser, which the API's
form uploads already use (the standard library's MIME parser took 83 ms for a push
with a 1 MiB picture). The body's size is bounded before this sees it
(``hub.api.guard``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from hub.vendors.event import PushError

MAX_PARTS = 16  # a push holds its metadata and a few pictures (scene, target, plate)
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(slots=True)
class Push:
    """``metadata``: (content type, bytes) of each part that is not a picture, in
    order; ``images``: the pictures' bytes, in order (the first is the scene)."""

    metadata: list[tuple[str, bytes]] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)


class _Parts:
    """Collects the parts python-multipart reports through its callbacks."""

    def __init__(self, max_parts: int) -> None:
        self.max_parts = max_parts
        self.parts: list[tuple[str, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, str] = {}
        self._data = bytearray()

    def begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise PushError("too_many_parts", f"more than {self.max_parts} parts in one push")
        self._headers, self._data = {}, bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field, self._value = bytearray(), bytearray()

    def data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def end(self) -> None:
        ctype = parse_options_header(self._headers.get("content-type", ""))[0]
        self.parts.append((ctype.decode("latin-1").lower(), bytes(self._data)))


def split(content_type: str, body: bytes, max_parts: int = MAX_PARTS) -> Push:
    """Split a push. Raises :class:`PushError` for a multipart body without parts or
    with more than ``max_parts``; a non-multipart body is one metadata part."""
    main, options = parse_options_header(content_type or "")
    ctype = main.decode("latin-1").lower()
    if not ctype.startswith("multipart/"):
        if _is_image(ctype, body):
            return Push(images=[body])
        return Push(metadata=[(ctype, body)])
    boundary = options.get(b"boundary")
    if not boundary:
        raise PushError("malformed", f"the {ctype} body names no boundary")
    # RFC 2046 lets a preamble (or a blank line) come before the first boundary;
    # the parser expects the boundary first.
    first = body.find(b"--" + boundary)
    if first < 0:
        raise PushError("malformed", "the multipart body has no part with its boundary")
    body = body[first:]
    parts = _Parts(max_parts)
    try:
        parser = MultipartParser(boundary, {
            "on_part_begin": parts.begin, "on_header_field": parts.header_field,
            "on_header_value": parts.header_value, "on_header_end": parts.header_end,
            "on_part_data": parts.data, "on_part_end": parts.end})
        parser.write(body)
        parser.finalize()
    except MultipartParseError as e:
        raise PushError("malformed", f"the multipart body cannot be read: {e}") from None
    push = Push()
    for pctype, data in parts.parts:
        if not data:
            continue
        if _is_image(pctype, data):
            push.images.append(data)
        else:
            push.metadata.append((pctype, data))
    if not push.metadata and not push.images:
        raise PushError("malformed", "the multipart body has no complete part (cut"
                        " short, or another boundary?)")
    return push


def _is_image(ctype: str, data: bytes) -> bool:
    # Some firmware labels its JPEG part application/octet-stream: the bytes decide.
    return ctype.startswith("image/") or data[:3] == _JPEG or data[:8] == _PNG
