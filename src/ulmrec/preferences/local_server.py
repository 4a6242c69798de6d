"""A minimal OpenAI-compatible chat-completions server on 127.0.0.1, for tests, benchmarks and dry runs.

It speaks ``POST <base>/chat/completions`` (JSON in, JSON out, as the OpenAI API does) and answers with a
deterministic sentence built from the prompt. A ``plan`` function can make any request misbehave the way real
servers do: 429 and 5xx statuses, answers that arrive too late, bodies that are not JSON, empty answers. It
counts and keeps every request it receives, so a test can check exactly what a client asked.

    with LocalChatServer(latency=0.2) as server:
        client = OpenAI(base_url=server.base_url, api_key="unused")

``python -m ulmrec.preferences.local_server --port 8000`` runs one in the foreground, e.g. to try
``ulmrec preferences preferences.mode=api preferences.base_url=http://127.0.0.1:8000/v1`` without a real LLM.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default (5) drops connection bursts from a highly concurrent client


@dataclass
class Reply:
    """What the server does with one request."""

    kind: str = "ok"
    """'ok' (a normal answer), 'status' (an error status), 'slow' (wait ``delay`` seconds, then answer),
    'malformed' (200 with a body that is not JSON), 'empty' (an answer whose content is empty),
    'no_choices' (valid JSON with an empty ``choices`` list)."""
    text: str | None = None
    """The answer's content for 'ok' and 'slow'; None: the default sentence."""
    status: int = 200
    """The HTTP status for 'status' (e.g. 429, 500, 503)."""
    delay: float = 0.0
    """Extra seconds before answering ('slow')."""


Plan = Callable[[dict, int], Reply]
"""``plan(request_json, attempt)`` -> :class:`Reply`; ``attempt`` counts earlier requests with the same messages
(0 for the first), so a plan can fail once and then succeed."""


def default_answer(request: dict) -> str:
    """A deterministic 'preference' made from the prompt: its first three quoted/listed product words."""
    prompt = " ".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "user")
    words = re.findall(r"[A-Za-z][A-Za-z'-]{2,}", prompt.split("\n", 1)[-1])
    return "The user prefers " + " ".join(words[:6]).lower() + "."


class LocalChatServer:
    """A threaded HTTP server answering chat completions; use as a context manager or start()/stop()."""

    def __init__(self, plan: Plan | None = None, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0,
                 model: str = "local-test-model"):
        self.plan = plan or (lambda request, attempt: Reply())
        self.latency = latency
        self.model = model
        self.requests: list[dict] = []
        """Every request body received (parsed JSON), in arrival order."""
        self.authorization: list[str | None] = []
        """The Authorization header of each request."""
        self.replies: list[str] = []
        """The kind of reply given to each request, in the same order."""
        self.max_inflight = 0
        """The most requests the server was handling at the same moment."""
        self._inflight = 0
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self._httpd = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> LocalChatServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ protocol
    def _record(self, body: dict, authorization: str | None) -> int:
        key = json.dumps(body.get("messages"), sort_keys=True)
        with self._lock:
            self.requests.append(body)
            self.authorization.append(authorization)
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            return attempt

    def _completion(self, body: dict, text: str) -> dict:
        return {"id": f"chatcmpl-local-{self.count}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", self.model),
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes; no 40 ms delayed-ACK stall

            def log_message(self, format, *args):  # noqa: A002 - silence the per-request log
                pass

            def _send(self, status: int, payload: bytes, content_type: str = "application/json",
                      headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}')
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(400, b'{"error": {"message": "request is not JSON", "type": "invalid_request_error"}}')
                    return
                attempt = server._record(body, self.headers.get("Authorization"))
                reply = server.plan(body, attempt)
                with server._lock:
                    server.replies.append(reply.kind)
                    server._inflight += 1
                    server.max_inflight = max(server.max_inflight, server._inflight)
                try:
                    self._answer(body, reply)
                finally:
                    with server._lock:
                        server._inflight -= 1

            def _answer(self, body: dict, reply: Reply) -> None:
                if server.latency:
                    time.sleep(server.latency)
                if reply.kind == "status":
                    err = {"error": {"message": f"injected status {reply.status}", "type": "server_error"}}
                    headers = {"Retry-After": "0"} if reply.status == 429 else None
                    self._send(reply.status, json.dumps(err).encode(), headers=headers)
                elif reply.kind == "malformed":
                    self._send(200, b'{"id": "chatcmpl-broken", "choices": [{"message": ')
                elif reply.kind == "no_choices":
                    self._send(200, json.dumps({**server._completion(body, ""), "choices": []}).encode())
                elif reply.kind == "empty":
                    self._send(200, json.dumps(server._completion(body, "")).encode())
                else:
                    if reply.kind == "slow":
                        time.sleep(reply.delay)
                    text = reply.text if reply.text is not None else default_answer(body)
                    self._send(200, json.dumps(server._completion(body, text)).encode())

        return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    args = p.parse_args(argv)
    server = LocalChatServer(latency=args.latency, port=args.port)
    print(f"serving chat completions at {server.base_url} (Ctrl-C to stop)", flush=True)
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
