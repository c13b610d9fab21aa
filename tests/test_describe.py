"""``ramtag describe`` against a real chat-completions server on loopback, and without one."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ramtag.cli.app import app
from ramtag.describe.cache import default_cache_file
from ramtag.describe.endpoint import ChatEndpoint, RetryPolicy
from ramtag.describe.keys import Secret, read_key_file, redact, resolve_api_key, write_key_file
from ramtag.describe.prompts import DESCRIPTIONS_PER_TAG, photo_line, questions, template_descriptions
from ramtag.errors import UsageError

KEY = "sk-test-0123456789abcdefSECRETKEY"
runner = CliRunner()


class ChatServer:
    """A chat-completions endpoint on 127.0.0.1 that records every request.

    ``n_mode``: "yes" honours ``n``; "reject" answers 400 to ``n > 1``; "ignore" sends one choice.
    ``failures``: statuses sent, in order, before any real reply (each with ``Retry-After: 0``).
    ``fail_after``: after this many good replies, every request gets a 503 (an outage).
    """

    def __init__(
        self, *, n_mode: str = "yes", failures: tuple[int, ...] = (), key: str | None = KEY, empty_every: int = 0
    ) -> None:
        self.n_mode = n_mode
        self.empty_every = empty_every  # every so many choices have no text (1: all, as a reasoning model's)
        self.choices = 0
        self.failures = list(failures)
        self.key = key
        self.fail_after: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.good = 0
        self.lock = threading.Lock()
        self.counter = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, reply = server.handle(self.path, self.headers.get("Authorization"), body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status in (429, 500, 503):
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def handle(self, path: str, auth: str | None, body: dict) -> tuple[int, dict]:
        with self.lock:
            self.requests.append({"path": path, "auth": auth, "body": body})
            if path != "/v1/chat/completions":
                return 404, {"error": {"message": f"no route {path}"}}
            if self.key is not None and auth != f"Bearer {self.key}":
                # Some servers echo (part of) the key they got: the client must scrub it.
                return 401, {"error": {"message": f"Incorrect API key provided: {auth}"}}
            if self.failures:
                status = self.failures.pop(0)
                return status, {"error": {"message": f"simulated {status}"}}
            if self.fail_after is not None and self.good >= self.fail_after:
                return 503, {"error": {"message": "overloaded"}}
            n = body.get("n", 1)
            if n > 1 and self.n_mode == "reject":
                return 400, {"error": {"message": "'n' must be 1 for this model"}}
            if self.n_mode == "ignore":
                n = 1
            assert body["messages"][0]["role"] == "user"
            prompt = body["messages"][0]["content"]
            choices = []
            for index in range(n):
                self.choices += 1
                if self.empty_every and self.choices % self.empty_every == 0:
                    choices.append({"index": index, "message": {"role": "assistant", "content": None if index % 2 else ""}})
                    continue
                self.counter += 1
                choices.append({"index": index, "message": {"role": "assistant", "content": f" {prompt} => answer {self.counter} "}})
            self.good += 1
            return 200, {"object": "chat.completion", "choices": choices}

    @property
    def completions(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v1/chat/completions"]

    def __enter__(self) -> ChatServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ChatServer]:
    options = getattr(request, "param", {})
    with ChatServer(**options) as chat:
        yield chat


def describe(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, ["describe", *args], env=env)


def everything_written(result: Result, *paths: Path) -> str:
    """Stdout, stderr, the files and the answer cache: where a key must never turn up."""
    parts = [result.stdout, result.stderr]
    for path in (*paths, default_cache_file()):
        if path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def check_descriptions(path: Path, tags: list[str]) -> dict[str, list[str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, list) and [list(item) for item in data] == [[tag] for tag in tags]
    found = {tag: texts for item in data for tag, texts in item.items()}
    for tag, texts in found.items():
        assert len(texts) == DESCRIPTIONS_PER_TAG == 51
        assert texts[0] == photo_line(tag)
        for number, prompt in enumerate(questions(tag)):
            answers = texts[1 + 10 * number : 11 + 10 * number]
            assert all(answer.startswith(f"{prompt} => answer ") for answer in answers), answers
            assert answers == [answer.strip() for answer in answers]
        assert len(set(texts)) == 51
    return found


@pytest.mark.parametrize("server", [{"failures": (429, 500)}], indirect=True)
def test_describe_with_retries_then_all_from_cache(server: ChatServer, tmp_path: Path) -> None:
    tag_file = tmp_path / "tags.txt"
    tag_file.write_text("# more tags\nred umbrella\n\n", encoding="utf-8")
    out = tmp_path / "descriptions.json"
    args = ["cat wearing a hat", "--from-file", str(tag_file), "--out", str(out),
            "--base-url", server.url, "--llm-model", "tiny-chat", "--api-key", KEY]
    result = describe(*args)
    assert result.exit_code == 0, result.output
    check_descriptions(out, ["cat wearing a hat", "red umbrella"])
    bodies = [r["body"] for r in server.completions]
    assert len(bodies) == 2 * 5 + 2  # one request per (tag, question), plus the 429 and the 500 retried
    for body in bodies:
        assert body["n"] == 10 and body["temperature"] == 0.99 and body["max_tokens"] == 77
        assert body["model"] == "tiny-chat"
    assert "12 requests sent" in result.stderr
    assert KEY not in everything_written(result, out)

    before = len(server.requests)
    again = describe(*args, "--overwrite")
    assert again.exit_code == 0, again.output
    assert len(server.requests) == before  # everything came from the cache
    assert "0 requests sent" in again.stderr
    assert out.read_text(encoding="utf-8") == json.dumps(
        json.loads(out.read_text(encoding="utf-8")), ensure_ascii=False, indent=3
    ) + "\n"


@pytest.mark.parametrize("server", [{"n_mode": "reject"}, {"n_mode": "ignore"}], indirect=True)
def test_endpoints_without_n_get_single_calls(server: ChatServer, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    result = describe("red umbrella", "cat", "--out", str(out), "--base-url", server.url,
                      "--api-key", KEY, "--concurrency", "1")
    assert result.exit_code == 0, result.output
    check_descriptions(out, ["red umbrella", "cat"])
    singles = [r for r in server.completions if "n" not in r["body"]]
    with_n = [r for r in server.completions if "n" in r["body"]]
    assert len(with_n) == 1  # the first reply told the client; nothing asks for n again
    answered_by_first = 0 if server.n_mode == "reject" else 1
    assert len(singles) == 2 * 5 * 10 - answered_by_first


@pytest.mark.parametrize("server", [{"key": KEY}], indirect=True)
def test_key_sources_and_a_refused_key_never_show(server: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "d.json"
    monkeypatch.setenv("RAMTAG_CONFIG", str(tmp_path / "config"))
    base = ["red umbrella", "--base-url", server.url, "--retries", "0"]

    wrong = "sk-wrong-9876543210zyxwvutsrqponm"
    result = describe(*base, "--api-key", wrong, "--out", str(out))
    assert result.exit_code == 1
    assert "HTTP 401" in result.stderr and "key was refused" in result.stderr
    assert wrong not in everything_written(result) and wrong[:16] not in everything_written(result)
    assert "Traceback" not in result.output

    # The environment variable works...
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert describe(*base, "--out", str(out)).exit_code == 0
    # ...but a key file comes first, and one that others can read is refused.
    key_file = tmp_path / "config" / "api_key"
    key_file.parent.mkdir()
    key_file.write_text(wrong + "\n")
    key_file.chmod(0o644)
    result = describe(*base, "--out", str(out), "--overwrite", "cat")
    assert result.exit_code == 2 and "chmod 600" in result.stderr
    key_file.chmod(0o600)
    result = describe(*base, "--out", str(out), "--overwrite", "cat")
    assert result.exit_code == 1 and "HTTP 401" in result.stderr  # the (wrong) file key was used
    assert wrong not in everything_written(result)
    # An explicit --api-key beats both.
    result = describe(*base, "--out", str(out), "--overwrite", "cat", "--api-key", KEY)
    assert result.exit_code == 0, result.output
    assert KEY not in everything_written(result, out)


@pytest.mark.parametrize("server", [{}], indirect=True)
def test_interrupted_describe_resumes(server: ChatServer, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    tags = ["alpha", "beta", "gamma"]
    args = [*tags, "--out", str(out), "--base-url", server.url, "--api-key", KEY, "--concurrency", "1"]
    server.fail_after = 7  # an outage after 7 of the 15 questions were answered
    result = describe(*args, "--retries", "1")
    assert result.exit_code == 1
    assert "gave up after 2 attempts" in result.stderr and "HTTP 503" in result.stderr
    assert not out.exists()
    server.fail_after = None
    before = len(server.completions)
    result = describe(*args)
    assert result.exit_code == 0, result.output
    assert len(server.completions) - before == 15 - 7, [r["body"]["messages"][0]["content"] for r in server.completions]  # only what was missing
    found = check_descriptions(out, tags)
    numbers = sorted(int(text.rsplit(" ", 1)[1]) for texts in found.values() for text in texts[1:])
    assert numbers == list(range(1, 151))  # the first 70 answers kept, none asked twice


def test_template_descriptions_need_no_model(tmp_path: Path) -> None:
    result = describe("cat wearing a hat", "apple", "--llm", "none")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [list(item) for item in data] == [["cat wearing a hat"], ["apple"]]
    texts = data[1]["apple"]
    assert len(texts) == 51 and len(set(texts)) == 51 and texts[0] == "a photo of a apple."
    assert "an apple" in " ".join(texts)
    assert texts == template_descriptions("apple")


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    out.write_text("[]")
    result = describe("cat", "--llm", "none", "--out", str(out))
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert describe("cat", "cat", "--llm", "none").exit_code == 2
    assert describe("--llm", "none").exit_code == 2
    assert describe("cat", "--llm", "gpt").exit_code == 2
    result = describe("cat", "--llm", "none", "--embed")
    assert result.exit_code == 2 and "--out" in result.stderr


def test_an_encoder_that_cannot_load_leaves_no_file_behind(tmp_path: Path) -> None:
    """--embed with a text encoder that is not there: nothing written, so the same command runs
    once the encoder is found (a descriptions file left behind was refused as existing)."""
    out = tmp_path / "d.json"
    result = describe("red umbrella", "--llm", "none", "--out", str(out), "--embed",
                      "--text-encoder", str(tmp_path / "no-encoder"))
    assert result.exit_code != 0 and not out.exists() and not list(tmp_path.iterdir())


def test_an_encoder_missing_offline_is_said_before_any_request(
    server: ChatServer, tmp_path: Path, isolated_user_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM was asked (and paid) first, then the encoder failed; a cache holding the model but not
    its tokenizer (what transformers' one-liner leaves) gave 'not a CLIP text encoder'."""
    import huggingface_hub.constants

    hub = isolated_user_dirs / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    out = tmp_path / "d.json"
    args = ["red umbrella", "--base-url", server.url, "--api-key", KEY, "--out", str(out), "--embed"]
    result = describe(*args)
    assert result.exit_code == 1 and server.completions == [] and not out.exists()
    said = result.stderr.replace("\n", "")
    assert "the text encoder openai/clip-vit-base-patch16 is not cached" in said, said
    assert "ramtag is offline" in said and "run `ramtag models download --text-encoder` on a connected machine" in said
    snapshot = hub / "models--openai--clip-vit-base-patch16" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}", encoding="utf-8")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    result = describe(*args)
    assert result.exit_code == 1 and server.completions == []
    assert "is cached without its tokenizer" in result.stderr.replace("\n", ""), result.stderr
    (snapshot / "tokenizer.json").write_text("{}", encoding="utf-8")  # a tokenizer without tokenizer_config.json
    from ramtag.describe.encoder import check_encoder_available

    check_encoder_available("openai/clip-vit-base-patch16")  # passes: loading decides


def test_unreachable_endpoint_fails_fast() -> None:
    with ChatServer() as chat:
        url = chat.url
    result = describe("cat", "--base-url", url, "--api-key", KEY)
    assert result.exit_code == 1 and "connection refused" in result.stderr


def test_backoff_waits_grow_and_honour_retry_after() -> None:
    policy = RetryPolicy(retries=3, initial_s=1.0, max_s=30.0)
    assert 1.0 <= policy.wait(0, None) <= 1.25
    assert 4.0 <= policy.wait(2, None) <= 5.0
    assert policy.wait(10, None) <= 30.0 * 1.25
    assert policy.wait(0, 7.0) == 7.0 and policy.wait(0, 1e6) == 60.0


def test_endpoint_accepts_a_full_url_and_backs_off(tmp_path: Path) -> None:
    with ChatServer(failures=(502, 504)) as chat:
        endpoint = ChatEndpoint(f"{chat.url}/chat/completions/", "m", api_key=Secret(KEY),
                                retry=RetryPolicy(retries=2, initial_s=0.01))
        assert endpoint.base_url == chat.url
        assert len(endpoint.complete("hello", 3)) == 3
        assert endpoint.requests == 3


def test_secret_hides_itself(tmp_path: Path) -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret) and KEY not in f"{secret}" and KEY not in str([secret])
    assert redact(f"bad key {KEY[:20]}...", secret) == "bad key <hidden>..."
    path = tmp_path / "cfg" / "key"
    write_key_file(path, KEY)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert read_key_file(path).reveal() == KEY
    path.chmod(0o640)
    with pytest.raises(UsageError, match="chmod 600"):
        read_key_file(path)
    assert resolve_api_key("explicit", path).reveal() == "explicit"


def make_tiny_causal_lm(folder: Path) -> Path:
    """A random one-layer GPT-2 with a byte-level tokenizer: gibberish, but real generation."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: i for i, char in enumerate(alphabet)} | {"<|endoftext|>": 256}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>").save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=257, n_positions=256, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=256, eos_token_id=256)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_local_transformers_model(tmp_path: Path) -> None:
    folder = make_tiny_causal_lm(tmp_path / "tiny-lm")
    out = tmp_path / "d.json"
    result = describe("red umbrella", "--llm", f"hf:{folder}", "--out", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    texts = json.loads(out.read_text(encoding="utf-8"))[0]["red umbrella"]
    assert len(texts) == 51 and texts[0] == "a photo of a red umbrella."
    assert "5 requests sent" in result.stderr  # one generate() of 10 samples per question
    again = describe("red umbrella", "--llm", f"hf:{folder}", "--out", str(out), "--overwrite", "--device", "cpu")
    assert again.exit_code == 0 and "0 requests sent" in again.stderr
    assert json.loads(out.read_text(encoding="utf-8"))[0]["red umbrella"] == texts
    assert not os.environ.get("OPENAI_API_KEY")


@pytest.mark.parametrize("server", [{"empty_every": 3}], indirect=True)
def test_empty_answers_are_no_descriptions(server: ChatServer, tmp_path: Path) -> None:
    """A third of the choices come back without text: they are asked for again, never kept."""
    out = tmp_path / "d.json"
    result = describe("kite", "--out", str(out), "--base-url", server.url, "--api-key", KEY)
    assert result.exit_code == 0, result.output
    check_descriptions(out, ["kite"])  # 51 real texts, none empty
    cached = [json.loads(line)["answers"] for line in default_cache_file().read_text(encoding="utf-8").splitlines()]
    assert all(answer.strip() for answers in cached for answer in answers)


@pytest.mark.parametrize("server", [{"empty_every": 1}], indirect=True)
def test_a_model_that_answers_nothing_is_said_and_nothing_kept(server: ChatServer, tmp_path: Path) -> None:
    # A reasoning model spending max_tokens thinking answers with empty (null) content, every time.
    out = tmp_path / "d.json"
    result = describe("kite", "--out", str(out), "--base-url", server.url, "--api-key", KEY, "--concurrency", "1")
    assert result.exit_code == 1 and not out.exists()
    assert "3 replies in a row with empty text" in result.stderr and "--llm-model" in result.stderr
    assert len(server.completions) <= 3 + 1  # (the first may have asked for n answers at once)
    assert not default_cache_file().exists() or not default_cache_file().read_text(encoding="utf-8").strip()


@pytest.mark.parametrize("server", [{"failures": (500,) * 20}], indirect=True)
def test_after_a_failure_no_other_request_is_sent(server: ChatServer, tmp_path: Path) -> None:
    result = describe("kite", "--base-url", server.url, "--api-key", KEY, "--concurrency", "1", "--retries", "1")
    assert result.exit_code == 1 and "gave up after 2 attempts" in result.stderr
    assert len(server.completions) == 2  # the next question was not asked (with its own retries)


def test_the_first_failure_does_not_wait_for_requests_in_flight(tmp_path: Path) -> None:
    from ramtag.describe import LLMError
    from ramtag.describe import describe as describe_tags
    from ramtag.describe.cache import AnswerCache

    release, first_failed = threading.Event(), threading.Event()
    finished: list[str] = []

    class Answerer:
        model_name, max_concurrency, requests, identity = "m", None, 0, "fake"

        def complete(self, prompt: str, n: int) -> list[str]:
            if "kite" in prompt and first_failed.is_set() is False and not finished:
                first_failed.set()
                raise LLMError("the server went away")
            release.wait(60)  # a request that hangs (until the test ends)
            finished.append(prompt)
            return ["an answer"] * n

    try:
        with pytest.raises(LLMError, match="went away"):
            describe_tags(["kite"], Answerer(), cache=AnswerCache(tmp_path / "answers.jsonl"), concurrency=2)
        assert finished == []  # raised while the other request was still hanging
    finally:
        release.set()


def test_a_text_encoder_path_that_is_no_folder_is_one_line_before_any_work(tmp_path: Path, ramplus_tiny) -> None:
    out = tmp_path / "d.json"
    for name in ("./myclip", str(tmp_path / "nowhere"), "models/clip/v1"):
        result = describe("red umbrella", "--llm", "none", "--out", str(out), "--embed", "--text-encoder", name)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == (f"error: --text-encoder {name}: no such folder; give a folder holding a CLIP "
                                         "text model and its tokenizer, or a Hugging Face id such as "
                                         "openai/clip-vit-base-patch16")
    assert not out.exists()
    run = runner.invoke(app, ["run", str(ramplus_tiny.images / "demo2.jpg"), "--tags", "red umbrella",
                              "--text-encoder", "./myclip", *ramplus_tiny.cli_args()])
    assert run.exit_code == 2 and "--text-encoder ./myclip: no such folder" in run.stderr
    assert "precision" not in run.stderr  # said before the model loads
