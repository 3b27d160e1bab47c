"""Media made on the spot for tests: a PNG as a data URL, a tone as a WAV (no files, no downloads)."""

from __future__ import annotations

import base64
import io
import math
import struct
import wave


def png_data_url(width: int = 8, height: int = 6, colour: tuple[int, int, int] = (200, 30, 30)) -> str:
    """A plain-coloured PNG as OpenAI's image_url data URL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def tone_wav(seconds: float, rate: int = 16_000, hz: float = 440.0) -> bytes:
    """A WAV of a sine tone, 16-bit mono: what a microphone recording looks like to the engine."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (
            int(0.3 * 32767 * math.sin(2 * math.pi * hz * i / rate)) for i in range(int(rate * seconds))
        )
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return buffer.getvalue()
