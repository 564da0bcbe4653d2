"""A real HTTP server on 127.0.0.1 that answers the Hub routes huggingface_hub 2.x uses:

* ``GET /api/models?filter=..&filter=..&limit=..`` (HfApi.list_models; every filter must be a tag);
* ``GET /api/models/{org}/{name}/revision/{rev}`` (repo_info, first call of snapshot_download);
* ``GET /api/models/{org}/{name}/tree/{rev}?recursive=..`` (list_repo_tree);
* ``HEAD``/``GET /{org}/{name}/resolve/{rev}/{file}`` (hf_hub_download) with ``X-Repo-Commit``,
  ``ETag`` and ``Content-Length`` -- the headers huggingface_hub refuses to work without
  (``file_download._get_metadata_or_catch_error``).

Repos are built in the test: ``FakeRepo(files={name: bytes}, tags=[...], gated=..)``. A gated repo
answers file downloads with 403 + ``X-Error-Code: GatedRepo`` (as the Hub does); a private one
answers everything with 401 + ``X-Error-Code: RepoNotFound``. ``rate_limit[repo] = n`` makes the
next n requests for that repo answer 429 with ``Retry-After: 0``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    tags: list[str] = field(default_factory=list)
    gated: bool = False
    private: bool = False
    downloads: int = 0

    @property
    def sha(self) -> str:
        h = hashlib.sha1()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name])
        return h.hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.rate_limit: dict[str, int] = {}
        self.log: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, obj, code: int = 200, headers: dict | None = None) -> None:
                self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

            def _error(self, code: int, error_code: str, extra: dict | None = None) -> None:
                self._json({"error": error_code}, code, {"X-Error-Code": error_code, **(extra or {})})

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = parse_qs(parts.query)
                hub.log.append((self.command, self.path))
                if path == "/api/models":
                    return self._list(query)
                segs = path.strip("/").split("/")
                if segs[:2] == ["api", "models"] and len(segs) >= 6:
                    repo_id, kind, rev = f"{segs[2]}/{segs[3]}", segs[4], "/".join(segs[5:])
                elif len(segs) >= 5 and segs[2] == "resolve":
                    repo_id, kind, rev = f"{segs[0]}/{segs[1]}", "resolve", segs[3]
                else:
                    return self._error(404, "RepoNotFound")
                repo = hub.repos.get(repo_id)
                if hub.rate_limit.get(repo_id, 0) > 0:
                    hub.rate_limit[repo_id] -= 1
                    return self._error(429, "RateLimited", {"Retry-After": "0"})
                if repo is None or repo.private:
                    return self._error(401, "RepoNotFound")
                if rev not in ("main", repo.sha):
                    return self._error(404, "RevisionNotFound")
                if kind == "revision":
                    return self._json({
                        "id": repo_id, "sha": repo.sha, "private": False, "gated": "manual" if repo.gated else False,
                        "tags": repo.tags, "siblings": [{"rfilename": n} for n in sorted(repo.files)],
                    })
                if kind == "tree":
                    return self._json([
                        {"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                        for n, b in sorted(repo.files.items())
                    ])
                if kind == "resolve":
                    name = "/".join(segs[4:])
                    if repo.gated:
                        return self._error(403, "GatedRepo")
                    if name not in repo.files:
                        return self._error(404, "EntryNotFound", {"X-Repo-Commit": repo.sha})
                    body = repo.files[name]
                    return self._send(200, body, {
                        "X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha1(body).hexdigest()}"',
                        "Content-Type": "application/octet-stream",
                    })
                return self._error(404, "RepoNotFound")

            def _list(self, query: dict) -> None:
                wanted = query.get("filter", [])
                rows = [
                    (rid, r) for rid, r in hub.repos.items() if all(f in r.tags for f in wanted)
                ]
                rows.sort(key=lambda x: -x[1].downloads)
                if "limit" in query:
                    rows = rows[: int(query["limit"][0])]
                self._json([
                    {"id": rid, "sha": r.sha, "private": r.private, "gated": "manual" if r.gated else False,
                     "tags": r.tags} for rid, r in rows
                ])

        return Handler


def repo_from_dir(adapter_dir, *, extra: dict[str, bytes] | None = None, **kw) -> FakeRepo:
    """A FakeRepo holding every file of a local adapter directory (plus ``extra`` files)."""
    from pathlib import Path

    files = {p.name: p.read_bytes() for p in Path(adapter_dir).iterdir() if p.is_file()}
    files.update(extra or {})
    return FakeRepo(files=files, **kw)
