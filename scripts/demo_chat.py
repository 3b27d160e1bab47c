"""Requests to a fleet with the openai SDK: a chat completion, and where the fleet has them, embeddings, a
chat about an image and a transcription."""

from __future__ import annotations

import argparse
import base64
import io
import math
import struct
import sys
import time
import wave

import openai


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def chat(client: openai.OpenAI, model: str) -> None:
    started = time.perf_counter()
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello to the fleet."}],
        max_tokens=24,
    )
    elapsed = time.perf_counter() - started
    print(f"model: {reply.model}")
    print(f"reply: {reply.choices[0].message.content!r}")
    if reply.usage is not None:
        usage = reply.usage
        print(f"usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens")
    print(f"took:  {elapsed * 1000:.0f} ms  (the tiny models have random weights: their words are noise)")


def embed(client: openai.OpenAI, model: str) -> None:
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "Interest rates rose again."]
    vectors = [item.embedding for item in client.embeddings.create(model=model, input=texts).data]
    print(f"embeddings from {model}: {len(vectors)} x {len(vectors[0])} floats; cosine similarity")
    print(f"  {texts[0]!r} ~ {texts[1]!r}: {cosine(vectors[0], vectors[1]):.2f}")
    print(f"  {texts[0]!r} ~ {texts[2]!r}: {cosine(vectors[0], vectors[2]):.2f}")


def see(client: openai.OpenAI, model: str) -> None:
    """A chat message with an image in it, sent as a data URL (a red square on white, drawn here)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 64), "white")
    ImageDraw.Draw(image).rectangle((24, 12, 72, 52), fill=(200, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=16
    )
    tokens = reply.usage.prompt_tokens if reply.usage else "?"
    print(f"image chat with {model}: a {image.width}x{image.height} PNG ({len(buffer.getvalue())} bytes)")
    print(f"  reply: {reply.choices[0].message.content!r} ({tokens} prompt tokens, the image among them)")


def transcribe(client: openai.OpenAI, model: str) -> None:
    """A second of a 440 Hz tone, 16 kHz mono WAV, made here, sent as OpenAI's multipart upload."""
    rate = 16_000
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        tone = (int(9000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate))
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in tone))
    transcript = client.audio.transcriptions.create(
        model=model, file=("tone.wav", buffer.getvalue(), "audio/wav"), language="en"
    )
    print(f"transcription by {model} of a 1 s tone ({len(buffer.getvalue())} bytes of WAV):")
    print(f"  {transcript.text[:80]!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base_url")
    parser.add_argument("chat_model")
    parser.add_argument("--embed", help="an embedding model (task embed)")
    parser.add_argument("--vision", help="a model that reads images in chat messages")
    parser.add_argument("--transcribe", help="a speech-to-text model (task transcribe)")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="not-needed-locally", timeout=300)
    chat(client, args.chat_model)
    if args.embed:
        embed(client, args.embed)
    if args.vision:
        see(client, args.vision)
    if args.transcribe:
        transcribe(client, args.transcribe)
    print("models served:", ", ".join(m.id for m in client.models.list()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
