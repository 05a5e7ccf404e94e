"""A small OpenAI-compatible model server for the sandbox's real node: no model, no GPU, Python stdlib only.

It takes the command line modelyard renders for vLLM (``vllm serve --model PATH --served-model-name NAME
--port 8000 ...``; flags it has no use for are accepted and ignored) and answers deterministically, so a
test can assert on a real answer that went through the gateway:

    content = "<served name> echoes: <the last user message>"

Endpoints, as vLLM's OpenAI server has them: GET /health, GET /v1/models, POST /v1/chat/completions (with
``stream: true`` as server-sent events, and ``stream_options.include_usage``), POST /v1/completions, and GET
/metrics with the ``vllm:num_requests_running`` gauge the HorizontalPodAutoscaler scales on. It writes
nothing to disk, so it runs under a read-only root filesystem as any user.

Extra flag (not vLLM's): ``--response-delay SECONDS`` holds every completion that long, so a test can see
requests in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RUNNING_METRIC = "vllm:num_requests_running"


class State:
    def __init__(self, served: list[str], delay: float) -> None:
        self.served = served
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.total = 0
        self.ids = itertools.count(1)

    def enter(self) -> int:
        with self.lock:
            self.running += 1
            self.total += 1
            return next(self.ids)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``[serve] [MODEL] [--flag value]...`` as vLLM takes it; unknown flags and their values are ignored."""
    argv = list(argv)
    if argv[:1] == ["serve"]:
        argv.pop(0)
    model_tag = argv.pop(0) if argv and not argv[0].startswith("-") else None
    parser = argparse.ArgumentParser(prog="vllm serve", description="modelyard's test model server")
    parser.add_argument("--model", default=None)
    parser.add_argument("--served-model-name", nargs="+", default=None)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--response-delay", type=float, default=0.0)
    args, ignored = parser.parse_known_args(argv)
    model = args.model or model_tag or "test-model"
    args.served = args.served_model_name or [model]
    args.ignored = ignored
    return args


def last_user_message(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def words(text: str) -> int:
    return max(1, len(text.split()))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway reuses its connections
    server_version = "modelyard-test-model-server"
    state: State

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # --- routing ---------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/health", "/ping"):
            self._send(200, b"", "text/plain")
        elif path == "/v1/models":
            created = int(time.time())
            data = [
                {"id": name, "object": "model", "created": created, "owned_by": "modelyard"}
                for name in self.state.served
            ]
            self._json(200, {"object": "list", "data": data})
        elif path == "/metrics":
            self._send(200, self._metrics().encode(), "text/plain; version=0.0.4")
        else:
            self._error(404, f"no route {path}", "NotFoundError")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._read_body()
            self._error(404, f"no route {path}", "NotFoundError")
            return
        try:
            body = json.loads(self._read_body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
        except ValueError as error:
            self._error(400, f"invalid JSON body: {error}", "BadRequestError")
            return
        model = body.get("model")
        if model not in self.state.served:
            self._error(404, f"The model `{model}` does not exist.", "NotFoundError")
            return
        chat = path == "/v1/chat/completions"
        prompt = last_user_message(body.get("messages")) if chat else str(body.get("prompt", ""))
        answer = f"{model} echoes: {prompt}"
        number = self.state.enter()
        try:
            if self.state.delay:
                time.sleep(self.state.delay)
            ident = f"{'chatcmpl' if chat else 'cmpl'}-{number}"
            usage = {
                "prompt_tokens": words(prompt),
                "completion_tokens": words(answer),
                "total_tokens": words(prompt) + words(answer),
            }
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._stream(ident, str(model), answer, chat, usage if include_usage else None)
            else:
                self._json(200, self._completion(ident, str(model), answer, chat, usage))
        finally:
            self.state.leave()

    # --- bodies ----------------------------------------------------------------------------------------
    def _completion(
        self, ident: str, model: str, answer: str, chat: bool, usage: dict[str, int]
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": answer}
        else:
            choice["text"] = answer
        return {
            "id": ident,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
        }

    def _stream(self, ident: str, model: str, answer: str, chat: bool, usage: dict[str, int] | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {
                "id": ident,
                "object": obj,
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())

        pieces = answer.split(" ")
        for position, piece in enumerate(pieces):
            text = piece if position == 0 else f" {piece}"
            if chat:
                delta: dict[str, Any] = {"content": text}
                if position == 0:
                    delta["role"] = "assistant"
                event([{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}])
            else:
                event([{"index": 0, "text": text, "finish_reason": None, "logprobs": None}])
        final: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if chat:
            final["delta"] = {}
        else:
            final["text"] = ""
        event([final])
        if usage is not None:
            event([], usage=usage)
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _metrics(self) -> str:
        with self.state.lock:
            running, total = self.state.running, self.state.total
        lines = [
            f"# HELP {RUNNING_METRIC} Number of requests currently running on GPU.",
            f"# TYPE {RUNNING_METRIC} gauge",
            *(f'{RUNNING_METRIC}{{model_name="{name}"}} {running}' for name in self.state.served),
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            *(f'vllm:request_success_total{{model_name="{name}"}} {total}' for name in self.state.served),
        ]
        return "\n".join(lines) + "\n"

    # --- plumbing --------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, body: dict[str, Any]) -> None:
        self._send(code, json.dumps(body).encode(), "application/json")

    def _error(self, code: int, message: str, kind: str) -> None:
        self._json(code, {"object": "error", "message": message, "type": kind, "param": None, "code": code})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    Handler.state = State(args.served, args.response_delay)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    ignored = f" (ignoring {' '.join(args.ignored)})" if args.ignored else ""
    print(
        f"test model server: serving {', '.join(args.served)} on {args.host}:{args.port}{ignored}", flush=True
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
