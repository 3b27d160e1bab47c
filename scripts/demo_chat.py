"""Send one chat completion to a fleet with the official openai SDK and print the reply."""

from __future__ import annotations

import sys
import time

import openai


def main(base_url: str, model: str) -> int:
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
    print("models served:", ", ".join(m.id for m in client.models.list()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
