"""The front door's auth and request limits, without Ray: the layers every fleet endpoint puts first.

The real fleet runs them in tests/serving (both data paths); these cases pin the rules and messages."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.testclient import TestClient
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from modelfleet_contract.args import FrontDoorArgs
from serving_app.auth import API_KEYS_DIR_ENV, RELOAD_S, ApiKeys
from serving_app.errors import handle_validation_error
from serving_app.frontdoor import add_front_door
from serving_app.limits import RequestLimitsMiddleware
from tests.support.media import png_data_url

LIMITS = FrontDoorArgs(
    api_keys=["team-keys/a", "team-keys/b", "solo/key"],
    max_request_bytes=2048,
    max_tokens=100,
    max_n=2,
    max_batch_items=5,
    body_timeout_s=0.5,
)


@pytest.fixture
def keys_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {"team-keys/a": "key-a", "team-keys/b": "key-b\n", "solo/key": "key-solo"}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(value)
    monkeypatch.setenv(API_KEYS_DIR_ENV, str(tmp_path))
    return tmp_path


def app(tasks: dict[str, str] | None = None) -> FastAPI:
    """An endpoint that echoes what reached it."""
    echo = FastAPI()

    @echo.post("/v1/chat/completions")
    @echo.post("/v1/infer")
    @echo.post("/v1/embeddings")
    @echo.post("/v1/audio/transcriptions")
    async def reached(request: Request) -> dict[str, Any]:
        return {"body": (await request.body()).decode()}

    @echo.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    add_front_door(echo, LIMITS, endpoint="unified", tasks=tasks)
    return echo


def post(client: TestClient, body: Any, key: str = "key-a", path: str = "/v1/chat/completions") -> Any:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.usefixtures("keys_dir")
def test_every_listed_key_is_accepted_and_nothing_else() -> None:
    client = TestClient(app())
    for key in ("key-a", "key-b", "key-solo"):
        assert post(client, {"model": "m"}, key=key).status_code == 200, key
    for key in ("key-c", "key-", "key-a key-b", ""):
        reply = post(client, {"model": "m"}, key=key)
        assert reply.status_code == 401, key
        assert reply.json()["error"]["type"] == "authentication_error"
        assert reply.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/chat/completions", json={}).status_code == 401  # no header at all
    assert client.get("/healthz").status_code == 200  # probes need no key


def test_a_rotated_key_applies_within_the_reload_period_without_a_restart(keys_dir: Path) -> None:
    now = [0.0]
    keys = ApiKeys(LIMITS.api_keys, clock=lambda: now[0])
    assert keys.accepts(b"key-a")
    (keys_dir / "team-keys" / "a").write_text("key-a2")
    now[0] += RELOAD_S / 2
    assert keys.accepts(b"key-a")  # cached: files are read at most every RELOAD_S
    now[0] += RELOAD_S
    assert not keys.accepts(b"key-a") and keys.accepts(b"key-a2")
    assert keys.accepts(b"key-b")  # the others are untouched


def test_a_missing_key_file_accepts_nothing_and_is_named_in_the_log_without_any_key(
    keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (keys_dir / "solo" / "key").unlink()
    (keys_dir / "team-keys" / "b").write_text("   \n")  # an empty key must never match an empty token
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        keys = ApiKeys(LIMITS.api_keys)
        assert keys.accepts(b"key-a") and not keys.accepts(b"key-solo") and not keys.accepts(b"")
    assert "solo/key" in caplog.text and "team-keys/b" in caplog.text
    assert "key-a" not in caplog.text and "key-solo" not in caplog.text


def test_with_no_readable_key_every_request_is_refused_and_told_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEYS_DIR_ENV, str(tmp_path / "nothing-here"))
    reply = post(TestClient(app()), {"model": "m"}, key="anything")
    assert reply.status_code == 401
    assert "none of the 3 key files" in reply.json()["error"]["message"]


@pytest.mark.usefixtures("keys_dir")
def test_every_key_is_compared_whatever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    ApiKeys(LIMITS.api_keys).accepts(b"key-a")
    assert compared == [b"key-a", b"key-b", b"key-solo"]  # no early exit on the first match


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "m", "max_tokens": 101}, "max_tokens", ["101", "limit of 100", "limits.maxTokens"]),
        (
            {"model": "m", "max_completion_tokens": 5000},
            "max_completion_tokens",
            ["5000", "limits.maxTokens"],
        ),
        ({"model": "m", "n": 3}, "n", ["n is 3", "limit of 2", "limits.maxN"]),
        # Spelt as the endpoint's lenient validation would still accept them.
        ({"model": "m", "max_tokens": "100000"}, "max_tokens", ["100000", "limits.maxTokens"]),
        ({"model": "m", "max_tokens": 1e5}, "max_tokens", ["limits.maxTokens"]),
        ({"model": "m", "n": " 64 "}, "n", ["limits.maxN"]),
        # A "params" key is just an unknown field outside /v1/infer: it must not hide the real ones.
        ({"model": "m", "params": {}, "max_tokens": 500}, "max_tokens", ["500"]),
        # Shapes vLLM's request model fails on with a TypeError (a 500) instead of a validation error.
        ({"model": "m", "messages": 237740}, "messages", ["list of message objects", "int"]),
        ({"model": "m", "messages": [5]}, "messages", ["list of message objects"]),
        # What a client could ask of the engine beyond the token limit.
        ({"model": "m", "best_of": 5}, "best_of", ["best_of is 5", "limits.maxN"]),
        ({"model": "m", "prompt_logprobs": 1}, "prompt_logprobs", ["prompt_logprobs is 1"]),
        ({"model": "m", "max_tokens": 10, "min_tokens": 50}, "min_tokens", ["min_tokens is 50", "of 10"]),
        ({"model": "m", "min_tokens": 101}, "min_tokens", ["min_tokens is 101", "limits.maxTokens"]),
        ({"model": "m", "prompt": ["p"] * 6}, "prompt", ["prompt lists 6 inputs", "limit of 5"]),
    ],
)
@pytest.mark.usefixtures("keys_dir")
def test_generation_limits_get_400_naming_the_field_value_and_limit(
    body: dict[str, Any], param: str, words: list[str]
) -> None:
    reply = post(TestClient(app()), body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert all(word in error["message"] for word in words), error["message"]


@pytest.mark.usefixtures("keys_dir")
def test_a_generation_request_without_max_tokens_gets_the_fleets_limit() -> None:
    client = TestClient(app())
    body = {"model": "m", "ignore_eos": True, "messages": [{"role": "user", "content": "hé"}]}
    reached = json.loads(post(client, body).json()["body"])
    assert reached == {**body, "max_tokens": 100}
    # A null counts as absent; /v1/infer gets it under "params", made when missing.
    assert json.loads(post(client, {**body, "max_tokens": None}).json()["body"])["max_tokens"] == 100
    infer = post(client, {"model_id": "m", "input": "hi"}, path="/v1/infer").json()["body"]
    assert json.loads(infer)["params"] == {"max_tokens": 100}
    # A request naming either field keeps its own.
    asked = {**body, "max_completion_tokens": 7}
    assert json.loads(post(client, asked).json()["body"]) == asked


@pytest.mark.usefixtures("keys_dir")
def test_an_embeddings_input_list_over_the_batch_limit_gets_400() -> None:
    client = TestClient(app())
    reply = post(client, {"model": "m", "input": ["x"] * 6}, path="/v1/embeddings")
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "input"
    assert "limits.maxBatchItems" in reply.json()["error"]["message"]
    # A list of token ids is one input; five inputs are within the limit.
    assert post(client, {"model": "m", "input": list(range(50))}, path="/v1/embeddings").status_code == 200
    assert post(client, {"model": "m", "input": [[1, 2]] * 5}, path="/v1/embeddings").status_code == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/infer"])
@pytest.mark.parametrize(
    "body",
    [b"[" * 2000, b"[" * 70 + b"]" * 70, b'{"model": "m", "x": ' + b"[" * 65 + b"]" * 65 + b"}"],
    ids=["unclosed", "deep-array", "deep-field"],
)
@pytest.mark.usefixtures("keys_dir")
def test_a_body_nested_too_deep_is_400_naming_the_body_never_a_500(path: str, body: bytes) -> None:
    client = TestClient(app())
    reply = client.post(path, content=body, headers={"Authorization": "Bearer key-a"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "body" and "64 levels" in reply.json()["error"]["message"]
    # As deep as the limit is fine.
    shallow = b'{"model": "m", "x": ' + b"[" * 63 + b"]" * 63 + b', "max_tokens": 1}'
    assert client.post(path, content=shallow, headers={"Authorization": "Bearer key-a"}).status_code == 200


@pytest.mark.usefixtures("keys_dir")
def test_requests_within_the_limits_reach_the_endpoint_unchanged() -> None:
    client = TestClient(app())
    body = {"model": "m", "max_tokens": 100, "n": 2, "messages": [{"role": "user", "content": "hé"}]}
    reply = post(client, body)
    assert reply.status_code == 200 and json.loads(reply.json()["body"]) == body
    # /v1/infer keeps its generation parameters under "params".
    assert post(client, {"model_id": "m", "params": {"max_tokens": 500}}, path="/v1/infer").status_code == 400
    # Other calls have no generation limits, and a body that is not JSON is the endpoint's to refuse.
    assert post(client, {"input": "x", "n": 50}, path="/v1/embeddings").status_code == 200
    raw = client.post("/v1/chat/completions", content=b"{not json", headers={"Authorization": "Bearer key-a"})
    assert raw.status_code == 200 and raw.json()["body"] == "{not json"


@pytest.mark.usefixtures("keys_dir")
def test_a_call_the_models_task_does_not_answer_is_400_naming_the_model_its_task_and_its_endpoint() -> None:
    client = TestClient(app({"chat": "generate", "minilm": "embed", "canary": "generate"}))
    chat = {"model": "minilm", "messages": [{"role": "user", "content": "hi"}]}
    reply = post(client, chat)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "model" and error["type"] == "invalid_request_error"
    assert all(w in error["message"] for w in ("'minilm'", "'embed'", "/v1/embeddings", "'generate'")), error
    infer = post(client, {"model_id": "minilm", "input": "hi"}, path="/v1/infer")
    assert infer.status_code == 400 and "'embed'" in infer.json()["error"]["message"]
    embed = post(client, {"model": "canary", "input": "hi"}, path="/v1/embeddings")
    assert embed.status_code == 400
    assert all(
        w in embed.json()["error"]["message"] for w in ("'canary'", "'generate'", "/v1/chat/completions")
    )
    # The right call, and names the door does not know (the endpoint's own 404), go through.
    assert post(client, {"model": "minilm", "input": "hi"}, path="/v1/embeddings").status_code == 200
    assert post(client, {**chat, "model": "chat"}).status_code == 200
    assert post(client, {**chat, "model": "other"}).status_code == 200


@pytest.mark.usefixtures("keys_dir")
def test_a_transcription_for_a_model_of_another_task_is_400_naming_it_from_the_form() -> None:
    client = TestClient(app({"chat": "generate", "whisper": "transcribe"}))
    headers = {"Authorization": "Bearer key-a"}
    audio = {"file": ("a.wav", b"RIFF....WAVE", "audio/wav")}

    def transcribe(model: str) -> Any:
        return client.post("/v1/audio/transcriptions", data={"model": model}, files=audio, headers=headers)

    refused = transcribe("chat")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "model"
    assert all(w in error["message"] for w in ("'chat'", "'generate'", "'transcribe'")), error
    # The speech model's own call goes through with its body intact; a chat call to it is refused.
    reached = transcribe("whisper")
    assert reached.status_code == 200 and 'name="model"' in reached.json()["body"]
    assert b"RIFF....WAVE" in reached.json()["body"].encode()
    chat = post(client, {"model": "whisper", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400 and "/v1/audio/transcriptions" in chat.json()["error"]["message"]
    # A body that is no form is the endpoint's to refuse.
    raw = client.post("/v1/audio/transcriptions", content=b"not a form", headers=headers)
    assert raw.status_code == 200


@pytest.mark.usefixtures("keys_dir")
def test_behind_a_models_own_door_a_call_without_model_has_the_models_task() -> None:
    client = TestClient(app({"minilm": "embed"}))
    reply = post(client, {"messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 400 and "This model has task 'embed'" in reply.json()["error"]["message"]
    assert post(client, {"input": "hi"}, path="/v1/embeddings").status_code == 200
    # Where the names behind a door have different tasks, a call without model is the endpoint's to refuse.
    mixed = TestClient(app({"chat": "generate", "minilm": "embed"}))
    assert post(mixed, {"input": "hi"}, path="/v1/embeddings").status_code == 200


def image_chat(*parts: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": "what is this?"}, *parts]
    return {
        "model": "m",
        "messages": [{"role": "system", "content": "hi"}, {"role": "user", "content": content}],
        "max_tokens": 8,
    }


def image(url: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def truncated_png_data_url() -> str:
    raw = base64.b64decode(png_data_url().split(",", 1)[1])
    return "data:image/png;base64," + base64.b64encode(raw[: len(raw) // 2]).decode()


@pytest.mark.parametrize(
    ("part", "words"),
    [
        (image("data:image/png;base64,@@not-base64"), ["not valid base64"]),
        (
            image("data:image/png;base64," + base64.b64encode(b"hello world").decode()),
            ["not an image", "11 bytes"],
        ),
        (image(truncated_png_data_url()), ["not an image"]),
        (image("data:text/plain;base64,aGk="), ["'text/plain'", "not image/*"]),
        (image("data:image/png,rawbytes"), ["without ';base64,'"]),
        (image("file:///etc/passwd"), ["scheme 'file'", "data URL"]),
        (image(5), ["url string", "int"]),
        ({"type": "image_url", "image_url": {}}, ["url string", "NoneType"]),
    ],
)
@pytest.mark.usefixtures("keys_dir")
def test_an_image_no_model_could_read_is_400_naming_its_part(part: dict[str, Any], words: list[str]) -> None:
    reply = post(TestClient(app()), image_chat(image(png_data_url()), part))
    assert reply.status_code == 400
    error = reply.json()["error"]
    where = "messages[1].content[2].image_url"
    assert error["param"] == where and error["message"].startswith(where), error
    assert all(word in error["message"] for word in words), error["message"]


@pytest.mark.usefixtures("keys_dir")
def test_readable_images_and_fetched_urls_reach_the_endpoint_unchanged() -> None:
    client = TestClient(app())
    for body in (
        image_chat(image(png_data_url()), image(png_data_url(30, 20))),
        image_chat({"type": "image_url", "image_url": png_data_url()}),  # the bare string some clients send
        # The engine fetches it: a public address (a literal here, so that nothing resolves a name).
        image_chat(image("https://93.184.215.14/cat.png")),
    ):
        reply = post(client, body)
        assert reply.status_code == 200 and json.loads(reply.json()["body"]) == body


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:9/cat.png", "127.0.0.1"),
        ("http://localhost/cat.png", ""),  # 127.0.0.1 or ::1, whichever /etc/hosts lists first
        ("http://[::1]/cat.png", "::1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),  # the cloud's metadata service
        ("http://10.0.0.7/cat.png", "10.0.0.7"),
        ("http://192.168.1.1/cat.png", "192.168.1.1"),
        ("http://100.64.0.1/cat.png", "100.64.0.1"),  # shared address space (carrier-grade NAT)
        ("http://[fd00::1]/cat.png", "fd00::1"),
        ("http://0.0.0.0/cat.png", "0.0.0.0"),
    ],
)
@pytest.mark.usefixtures("keys_dir")
def test_a_media_url_inside_the_cluster_is_refused_naming_the_part(url: str, address: str) -> None:
    # Resolved, not fetched: an address literal (or localhost, from /etc/hosts) sends no packet.
    for kind in ("image_url", "video_url", "audio_url"):
        reply = post(TestClient(app()), image_chat({"type": kind, kind: {"url": url}}))
        assert reply.status_code == 400, (url, kind)
        error = reply.json()["error"]
        assert error["param"] == f"messages[1].content[1].{kind}"
        assert f"is {address}, not a public address" in error["message"] or (
            not address and "not a public address" in error["message"]
        ), error["message"]
        assert "allowed_media_domains" in error["message"]


@pytest.mark.usefixtures("keys_dir")
def test_a_host_a_model_allows_is_fetched_wherever_it_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "tests.unit.test_front_door.LIMITS", LIMITS.model_copy(update={"media_hosts": ["localhost"]})
    )
    body = image_chat(image("http://localhost/cat.png"))
    assert post(TestClient(app()), body).status_code == 200
    assert post(TestClient(app()), image_chat(image("http://127.0.0.1/cat.png"))).status_code == 400


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,@@"}}, ["not valid base64"]),
        ({"type": "video_url", "video_url": {"url": png_data_url()}}, ["type 'image/png', not video/*"]),
        ({"type": "audio_url", "audio_url": {"url": "file:///etc/passwd"}}, ["scheme 'file'"]),
        ({"type": "audio_url", "audio_url": 5}, ["needs a url string"]),
        ({"type": "input_audio", "input_audio": {"data": "@@", "format": "wav"}}, ["not valid base64"]),
        ({"type": "input_audio", "input_audio": "x"}, ["needs base64 'data'"]),
    ],
)
@pytest.mark.usefixtures("keys_dir")
def test_video_and_audio_parts_get_the_checks_images_get(part: dict[str, Any], words: list[str]) -> None:
    reply = post(TestClient(app()), image_chat(part))
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == f"messages[1].content[1].{part['type']}"
    assert all(word in error["message"] for word in words), error["message"]


@pytest.mark.usefixtures("keys_dir")
def test_a_body_over_the_size_limit_gets_413() -> None:
    client = TestClient(app())
    reply = post(client, {"model": "m", "prompt": "x" * 4000})
    assert reply.status_code == 413
    assert "limit of 2048 bytes" in reply.json()["error"]["message"]
    assert "limits.maxRequestBytes" in reply.json()["error"]["message"]


@pytest.mark.usefixtures("keys_dir")
def test_an_unauthenticated_request_is_refused_before_its_body_is_read() -> None:
    reply = post(TestClient(app()), {"model": "m", "prompt": "x" * 4000}, key="wrong")
    assert reply.status_code == 401


def run_asgi(
    messages: list[Message], delays: list[float], headers: list[tuple[bytes, bytes]]
) -> list[Message]:
    """Drive the limits layer directly with a client that sends `messages` after `delays`."""
    reached: list[bytes] = []

    async def endpoint(_scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        reached.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Message] = []

    async def main() -> None:
        queue = list(zip(delays, messages, strict=True))

        async def receive() -> Message:
            if not queue:
                await asyncio.sleep(3600)
            delay, message = queue.pop(0)
            await asyncio.sleep(delay)
            return message

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
        await asyncio.wait_for(RequestLimitsMiddleware(endpoint, limits=LIMITS)(scope, receive, send), 10)

    asyncio.run(main())
    return [*sent, {"type": "reached", "bodies": reached}]


def test_a_client_trickling_its_body_is_cut_off_with_408() -> None:
    chunks = [{"type": "http.request", "body": b"{", "more_body": True}] * 20
    sent = run_asgi(chunks, [0.1] * 20, [])
    start = sent[0]
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert "limits.bodyTimeoutSeconds" in json.loads(sent[1]["body"])["error"]["message"]
    assert sent[-1]["bodies"] == []  # the endpoint never saw it


def test_a_declared_oversized_body_is_refused_before_reading_it() -> None:
    sent = run_asgi([], [], [(b"content-length", b"999999")])
    assert sent[0]["status"] == 413 and sent[-1]["bodies"] == []


def test_a_body_in_pieces_is_handed_on_whole() -> None:
    pieces = [b'{"model": ', b'"m", "n": ', b'1, "max_tokens": 9}']
    messages = [{"type": "http.request", "body": p, "more_body": i < 2} for i, p in enumerate(pieces)]
    sent = run_asgi(messages, [0.05] * 3, [])
    assert sent[0]["status"] == 200 and sent[-1]["bodies"] == [b"".join(pieces)]


@pytest.mark.usefixtures("keys_dir")
def test_a_websocket_needs_a_key_too() -> None:
    ws_app = app()

    @ws_app.websocket("/v1/realtime")
    async def realtime(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hello")
        await socket.close()

    client = TestClient(ws_app)
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/v1/realtime") as socket:
        socket.receive_text()
    assert refused.value.code == 1008
    headers = {"Authorization": "Bearer key-a"}
    with client.websocket_connect("/v1/realtime", headers=headers) as socket:
        assert socket.receive_text() == "hello"


def test_the_keys_directory_is_read_where_the_keys_are_used(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEYS_DIR_ENV, "/nowhere")
    keys = ApiKeys(LIMITS.api_keys)  # built in one process...
    monkeypatch.setenv(API_KEYS_DIR_ENV, str(keys_dir))  # ...used in a replica with its own environment
    assert keys.accepts(b"key-a")


class ChatBody(BaseModel):
    model: str
    messages: list[dict[str, str]]


def test_a_body_that_does_not_fit_the_schema_is_400_naming_the_field_even_when_json_cannot_echo_it() -> None:
    strict = FastAPI()
    strict.add_exception_handler(RequestValidationError, handle_validation_error)

    @strict.post("/v1/chat/completions")
    async def chat(body: ChatBody) -> dict[str, str]:
        return {"model": body.model}

    client = TestClient(strict)
    for content in (b"-Infinity", b'{"model": "m", "messages": NaN}', b'{"model": "m", "messages": 7}'):
        reply = client.post(
            "/v1/chat/completions", content=content, headers={"Content-Type": "application/json"}
        )
        assert reply.status_code == 400, (content, reply.text)
        assert reply.json()["error"]["type"] == "invalid_request_error"
    assert reply.json()["error"]["param"] == "messages"
