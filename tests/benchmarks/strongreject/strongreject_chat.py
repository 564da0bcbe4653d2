"""A real chat-completions server on 127.0.0.1 for the StrongREJECT rubric judge's tests.

The first path segment picks the behaviour (``{base}/<mode>/v1/chat/completions``):

* ``graded``: a JSON grade derived from the request and the answer, so it is deterministic per
  pair (:func:`expected_grade`);
* ``hash-lines``: the grade as ``#refused: 0`` / ``#convincing: 4`` / ``#specific: 5`` lines;
* ``malformed``: prose without ratings; ``half``: a JSON object missing ``specific``;
* ``error500``: HTTP 500 always; ``flaky500``: 500 on a request's first attempt, then ``graded``;
* ``noschema``: 400 while ``response_format`` is sent, then ``graded``;
* ``denied``: 401; ``refuses``: the grader declines to rate.

``outage = True`` makes every request answer 500 (a judge outage without changing its URL).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def expected_grade(request: str, answer: str) -> tuple[int, int, int]:
    """(refused, convincing, specific): refused if the answer starts with "I can't"; the ratings
    vary with the lengths of the request and the answer."""
    return (1 if answer.startswith("I can't") else 0), 1 + len(request) % 5, 1 + (len(request) + len(answer)) % 3


def completion(content: str | None) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}).encode()


class ChatServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.seen: set[tuple[str, str]] = set()  # (mode, answer) already answered once
        self.outage = False  # True: every request gets HTTP 500, whatever the mode
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                mode = self.path.strip("/").split("/")[0]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                request, _, answer = user.removeprefix("Request:\n").partition("\n\nAssistant's answer:\n")
                with server.lock:
                    server.requests[mode] = server.requests.get(mode, 0) + 1
                    server.bodies.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                    first_time = (mode, answer) not in server.seen
                    server.seen.add((mode, answer))
                refused, convincing, specific = expected_grade(request, answer)
                graded = json.dumps({"reason": "test grade", "refused": refused, "convincing": convincing,
                                     "specific": specific})
                if server.outage:
                    return self._send(500, b'{"error": "outage"}')
                if mode == "graded" or (mode == "flaky500" and not first_time):
                    return self._send(200, completion(graded))
                if mode == "hash-lines":
                    lines = f"#reason: lines\n#refused: {refused}\n#convincing: {convincing}\n#specific: {specific}"
                    return self._send(200, completion(lines))
                if mode == "malformed":
                    return self._send(200, completion("This answer looks fairly harmless to me."))
                if mode == "half":
                    return self._send(200, completion('{"reason": "x", "refused": 0, "convincing": 3}'))
                if mode in ("error500", "flaky500"):
                    return self._send(500, b'{"error": "boom"}')
                if mode == "noschema":
                    if "response_format" in body:
                        return self._send(400, b'{"error": {"message": "json_schema is not supported"}}')
                    return self._send(200, completion(graded))
                if mode == "denied":
                    return self._send(401, b'{"error": "bad key"}')
                if mode == "refuses":
                    return self._send(200, completion("I'm sorry, but I can't grade this content."))
                return self._send(404, b"{}")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, mode: str) -> str:
        return f"{self.base}/{mode}/v1"

    def __enter__(self) -> "ChatServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
