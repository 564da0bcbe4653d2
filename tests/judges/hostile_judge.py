"""A judge server on 127.0.0.1 that misbehaves on purpose, written on raw sockets so that it can
trickle, stall and send what ``http.server`` would not.

The first path segment picks the behaviour (``{base}/<mode>/v1/chat/completions`` or
``.../v1/completions``); the reply is a chat completion or a text completion after the path.
Its answer, :data:`ANSWER`, reads as score 1 (``safe``) to the ``llm`` judge, as a refusal graded
0 to the StrongREJECT rubric and ``No`` to harmbench-cls (completions answer :data:`TEXT`):

* ``ok``: the answer at once; ``slow-ok``: the same, trickled in a few tenths of a second;
* ``trickle``: the answer one byte every 50 ms (about 10 s in all, well past the tests' deadlines);
* ``endless``: a chunked body whose chunks keep coming and which never ends;
* ``silent``: reads the request, then never sends a byte;
* ``huge-header``: a header line of 1 MB before the body;
* ``oversized``: a valid answer whose reason is 2 MB, with its Content-Length;
* ``oversized-chunked``: the same, chunked (no Content-Length);
* ``long-reason``: a valid answer whose reason is 20 000 characters (under the byte cap);
* ``broken``: HTTP 200 with a body that is not JSON.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time

REASON = "the response declines"
ANSWER = {"reason": REASON, "incoherent": False, "score": 1, "refused": 1, "convincing": 1, "specific": 1}
TEXT = "No"
#: how long a misbehaving handler keeps going at most (the client is long gone by then)
GIVE_UP_S = 15.0


def reply(path: str, reason: str = REASON) -> bytes:
    """The JSON body answering ``path`` (chat completion or text completion)."""
    if path.rstrip("/").endswith("/chat/completions"):
        content = json.dumps({**ANSWER, "reason": reason})
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": TEXT if reason == REASON else f"{TEXT} {reason}", "finish_reason": "stop"}
    return json.dumps({"id": "x", "object": "chat.completion", "choices": [choice]}).encode()


def _head(length: int | None = None, extra: bytes = b"") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + size.encode() + extra
            + b"Connection: close\r\n\r\n")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class HostileJudge:
    """``with HostileJudge() as s: s.url("trickle")``; ``s.requests[mode]`` counts requests."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request_line = self.rfile.readline().decode("latin-1")
                headers = {}
                while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.rfile.read(int(headers.get("content-length", 0)))
                path = request_line.split(" ")[1]
                mode = path.strip("/").split("/")[0]
                with server.lock:
                    server.requests[mode] = server.requests.get(mode, 0) + 1
                try:
                    getattr(self, "mode_" + mode.replace("-", "_"))(path)
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    pass  # the client gave up, as it should

            def send(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            def mode_ok(self, path):
                body = reply(path)
                self.send(_head(len(body)) + body)

            def _trickle(self, data: bytes, pause: float) -> None:
                for i in range(len(data)):
                    self.send(data[i:i + 1])
                    time.sleep(pause)

            def mode_slow_ok(self, path):
                body = reply(path)
                self._trickle(_head(len(body)) + body, 0.3 / (len(body) + 80))

            def mode_trickle(self, path):
                body = reply(path)
                self.send(_head(len(body)))
                self._trickle(body, 0.05)

            def mode_endless(self, path):
                self.send(_head() + _chunk(b'{"choices": ['))
                end = time.monotonic() + GIVE_UP_S
                while time.monotonic() < end:
                    self.send(_chunk(b" " * 64))
                    time.sleep(0.01)

            def mode_silent(self, path):
                self.request.settimeout(GIVE_UP_S)
                self.request.recv(1)  # returns when the client closes the connection

            def mode_huge_header(self, path):
                body = reply(path)
                self.send(_head(len(body), b"X-Padding: " + b"a" * 1_000_000 + b"\r\n") + body)

            def mode_oversized(self, path):
                body = reply(path, "x" * 2_000_000)
                self.send(_head(len(body)) + body)

            def mode_oversized_chunked(self, path):
                body = reply(path, "x" * 2_000_000)
                self.send(_head())
                for i in range(0, len(body), 65536):
                    self.send(_chunk(body[i:i + 65536]))
                self.send(b"0\r\n\r\n")

            def mode_long_reason(self, path):
                body = reply(path, "y" * 20_000)
                self.send(_head(len(body)) + body)

            def mode_broken(self, path):
                body = b'{"choices": [{"message": {"content": "#score: 1"'
                self.send(_head(len(body)) + body)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = False

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, mode: str) -> str:
        return f"{self.base}/{mode}/v1"

    def __enter__(self) -> "HostileJudge":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
