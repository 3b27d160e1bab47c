"""Images in chat messages, checked at the front door so a bad one is a 400 that names its part.

A chat message's ``content`` may be a list of parts; an ``image_url`` part carries the image as a data URL
(``data:image/png;base64,...``) or as an http(s) URL the engine fetches. vLLM refuses a broken image with a
400 whose message names no part (and is wrapped in Ray Serve LLM's internals), and a URL scheme it does not
fetch (``file:``) with a 500. Here every image part is checked before a model sees the request:
- ``image_url`` must be an object whose ``url`` is a string (or the string itself, as some clients send);
- a data URL must be base64 and decode to an image Pillow can identify (header and checksums, not the pixels);
- any other URL must be http(s): the engine fetches it (``engineArgs.allowed_media_domains`` restricts where).
The error names the part, e.g. ``messages[0].content[1].image_url``, as ``param`` and in the message.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from serving_app.errors import FleetHTTPError

_FETCHED_SCHEMES = ("http://", "https://")


def check_media_parts(document: dict[str, Any]) -> None:
    """Raise a 400 naming the first image part of ``messages`` that no model could read."""
    messages = document.get("messages")
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image_url":
                _check_image_part(part.get("image_url"), f"messages[{i}].content[{j}].image_url")


def _check_image_part(image_url: Any, where: str) -> None:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise _bad_image(where, f"needs a url string, got {type(url).__name__}")
    if url.startswith("data:"):
        _check_data_url(url, where)
    elif not url.lower().startswith(_FETCHED_SCHEMES):
        scheme = url.split(":", 1)[0] if ":" in url else url[:20]
        raise _bad_image(
            where,
            f"has a url with scheme '{scheme}'; send the image as a data URL "
            "(data:image/png;base64,...) or an http(s) URL",
        )


def _check_data_url(url: str, where: str) -> None:
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise _bad_image(where, "is a data URL without ';base64,' (data:image/png;base64,...)")
    media_type = header[len("data:") : -len(";base64")]
    if not media_type.startswith("image/"):
        raise _bad_image(where, f"is a data URL of type '{media_type}', not image/*")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_image(where, f"is not valid base64 ({exc})") from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()  # PNG: chunk checksums; other formats: the header alone
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _bad_image(where, f"is not an image Pillow can read ({len(raw)} bytes: {exc})") from None


def _bad_image(where: str, why: str) -> FleetHTTPError:
    return FleetHTTPError(400, f"{where} {why}.", param=where)
