"""A push's body split into its metadata and its pictures.

Hikvision sends an event with pictures as ``multipart/form-data`` (newer firmware,
JSON or XML first, then ``image/jpeg`` parts) or ``multipart/mixed`` (the
alert-stream framing, RFC 2046); a push without a picture is a bare XML or JSON
body. Dahua's picture pushes are multipart too, its plain ones JSON or its
``Code=...;action=...`` text. Both multipart kinds are read with the standard
library's MIME parser (:mod:`email`), which takes either framing; the body's size is
bounded before this sees it (``hub.api.guard``).
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage

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


def split(content_type: str, body: bytes, max_parts: int = MAX_PARTS) -> Push:
    """Split a push. Raises :class:`PushError` for a multipart body without parts or
    with more than ``max_parts``; a non-multipart body is one metadata part."""
    ctype = (content_type or "").strip()
    if not ctype.lower().startswith("multipart/"):
        if _is_image(ctype.lower(), body):
            return Push(images=[body])
        return Push(metadata=[(ctype.split(";")[0].strip().lower(), body)])
    if "boundary=" not in ctype.lower():
        raise PushError("malformed", f"the {ctype.split(';')[0]} body names no boundary")
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not isinstance(msg, EmailMessage) or not msg.is_multipart():
        raise PushError("malformed", "the multipart body could not be read")
    push = Push()
    count = 0
    for part in msg.iter_parts():
        count += 1
        if count > max_parts:
            raise PushError("too_many_parts", f"more than {max_parts} parts in one push")
        if part.is_multipart():
            continue  # nested multiparts are no vendor's format
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes) or not data:
            continue
        pctype = part.get_content_type().lower()
        if _is_image(pctype, data):
            push.images.append(data)
        else:
            push.metadata.append((pctype, data))
    if not push.metadata and not push.images:
        raise PushError("malformed", "the multipart body has no parts (is the boundary"
                        " right?)")
    return push


def _is_image(ctype: str, data: bytes) -> bool:
    # Some firmware labels its JPEG part application/octet-stream: the bytes decide.
    return ctype.startswith("image/") or data[:3] == _JPEG or data[:8] == _PNG
