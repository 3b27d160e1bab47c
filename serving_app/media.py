"""Media in chat messages, checked at the front door so a bad part is a 400 that names it.

A chat message's ``content`` may be a list of parts; an ``image_url``, ``video_url`` or ``audio_url`` part
carries its media as a data URL (``data:image/png;base64,...``) or as an http(s) URL the engine fetches, an
``input_audio`` part as base64 ``data``. vLLM refuses a broken one with a 400 whose message names no part
(wrapped in Ray Serve LLM's internals), a URL scheme it does not fetch (``file:``) with a 500, and fetches
any address it is given. Here every media part is checked before a model sees the request:
- the ``*_url`` must be an object whose ``url`` is a string (or the string itself, as some clients send);
- a data URL must be base64 of the part's media type (``image/*`` for an image, ...); an image must decode to
  one Pillow can identify (header and checksums, not the pixels); ``input_audio.data`` must be base64;
- any other URL must be http(s), and (``check_fetched_hosts``) its host must resolve to public addresses
  only: loopback, private, link-local (the cloud metadata service), shared, multicast and reserved addresses
  are refused unless ``engineArgs.allowed_media_domains`` of a model of the fleet names the host. The engine
  follows no redirect (serving_app/__init__.py), so an allowed URL cannot send it elsewhere.
The error names the part, e.g. ``messages[0].content[1].image_url``, as ``param`` and in the message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import socket
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from serving_app.errors import FleetHTTPError

_FETCHED_SCHEMES = ("http://", "https://")
# The URL parts and the media type their data URLs carry.
_URL_PARTS = {"image_url": "image", "video_url": "video", "audio_url": "audio"}
# How long resolving a media URL's host may take at the front door.
RESOLVE_TIMEOUT_S = 2.0


def check_media_parts(document: dict[str, Any]) -> list[tuple[str, str]]:
    """Raise a 400 naming the first media part of ``messages`` that no model could read; else the
    (part, URL) of each part the engine would fetch, for ``check_fetched_hosts``."""
    messages = document.get("messages")
    fetched: list[tuple[str, str]] = []
    if not isinstance(messages, list):
        return fetched
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _URL_PARTS:
                where = f"messages[{i}].content[{j}].{kind}"
                url = _check_url_part(part.get(kind), where, _URL_PARTS[kind])
                if url is not None:
                    fetched.append((where, url))
            elif kind == "input_audio":
                _check_input_audio(part.get("input_audio"), f"messages[{i}].content[{j}].input_audio")
    return fetched


def _check_url_part(value: Any, where: str, media: str) -> str | None:
    """The URL the engine would fetch, or None for a data URL (checked here)."""
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise _bad_part(where, f"needs a url string, got {type(url).__name__}")
    if url.startswith("data:"):
        _check_data_url(url, where, media)
        return None
    if not url.lower().startswith(_FETCHED_SCHEMES):
        scheme = url.split(":", 1)[0] if ":" in url else url[:20]
        raise _bad_part(
            where,
            f"has a url with scheme '{scheme}'; send the {media} as a data URL "
            f"(data:{media}/...;base64,...) or an http(s) URL",
        )
    return url


def _check_input_audio(value: Any, where: str) -> None:
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, str):
        raise _bad_part(where, "needs base64 'data' and a 'format'")
    _base64(data, where)


def _base64(payload: str, where: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_part(where, f"is not valid base64 ({exc})") from None


def _check_data_url(url: str, where: str, media: str) -> None:
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise _bad_part(where, f"is a data URL without ';base64,' (data:{media}/...;base64,...)")
    media_type = header[len("data:") : -len(";base64")]
    if not media_type.startswith(f"{media}/"):
        raise _bad_part(where, f"is a data URL of type '{media_type}', not {media}/*")
    raw = _base64(payload, where)
    if media == "image":
        _check_image(raw, where)


async def check_fetched_hosts(fetched: list[tuple[str, str]], allowed_hosts: Collection[str]) -> None:
    """Raise a 400 naming the first part whose URL's host is not one to fetch: not named in
    ``allowed_hosts``, and resolving (within RESOLVE_TIMEOUT_S) to an address that is not public."""
    loop = asyncio.get_running_loop()
    for where, url in fetched:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if not host:
            raise _bad_part(where, "has a url without a host")
        if host in allowed_hosts:
            continue
        try:
            found = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            raise _bad_part(where, f"has a url whose host '{host}' does not resolve") from None
        for *_, address in found:
            ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
            if not ip.is_global or ip.is_multicast:
                raise _bad_part(
                    where,
                    f"has a url whose host '{host}' is {ip}, not a public address; the fleet fetches media "
                    "from inside the cluster only from hosts a model's engineArgs.allowed_media_domains "
                    "names",
                )


def _check_image(raw: bytes, where: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()  # PNG: chunk checksums; other formats: the header alone
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _bad_part(where, f"is not an image Pillow can read ({len(raw)} bytes: {exc})") from None


def _bad_part(where: str, why: str) -> FleetHTTPError:
    return FleetHTTPError(400, f"{where} {why}.", param=where)
