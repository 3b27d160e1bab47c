"""A chat completion (and embeddings, given an embedding model) sent to a fleet with the openai SDK."""

from __future__ import annotations

import math
import sys
import time

import openai


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def embed(client: openai.OpenAI, model: str) -> None:
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "Interest rates rose again."]
    vectors = [item.embedding for item in client.embeddings.create(model=model, input=texts).data]
    print(f"embeddings from {model}: {len(vectors)} x {len(vectors[0])} floats; cosine similarity")
    print(f"  {texts[0]!r} ~ {texts[1]!r}: {cosine(vectors[0], vectors[1]):.2f}")
    print(f"  {texts[0]!r} ~ {texts[2]!r}: {cosine(vectors[0], vectors[2]):.2f}")


def main(base_url: str, model: str, embed_model: str | None = None) -> int:
    client = openai.OpenAI(base_url=base_url, api_key="not-needed-locally", timeout=300)
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
    print(f"took:  {elapsed * 1000:.0f} ms  (the tiny model has random weights: its words are noise)")
    if embed_model:
        embed(client, embed_model)
    print("models served:", ", ".join(m.id for m in client.models.list()))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
