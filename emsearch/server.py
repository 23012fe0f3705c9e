"""The HTTP search service: one index and its encoder loaded once, a JSON API and a small search page.

    emsearch serve indexes/news --port 8080
    curl -s localhost:8080/search -d '{"texts": ["Guten Morgen"], "k": 5, "langs": ["en"]}'

Endpoints:
    GET  /        the search page (self-contained HTML, no network needed)
    GET  /health  {"status": "ok"}
    GET  /info    model, index size, languages and the request limits
    POST /search  {"texts": [...], "k": 10, "langs": ["en", ...] | null, "nprobe": null}
                  → {"results": [[hit, ...], ...]}, one list per query, hit as in `emsearch query --json`
A bad request is answered 4xx with {"error": "..."}; the service keeps serving. It is built on the standard
library's ThreadingHTTPServer (no extra dependency): requests are read, parsed and answered on their own threads,
and searches run one at a time under a lock — the encoder and FAISS already use every core for one batch, so
running searches side by side would only oversubscribe the CPU, while /health stays answerable meanwhile.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from emsearch.errors import EmsearchError
from emsearch.search.query import SearchRequest, hit_json, run


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_body: int = 1 << 20  # bytes of JSON
    max_k: int = 100
    max_texts: int = 64  # queries per request


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SearchService:
    """The loaded index behind the API; `search` takes the decoded JSON body."""

    def __init__(self, index, limits: Limits = Limits()):
        self.index = index
        self.limits = limits
        self.lock = threading.Lock()
        self.page = resources.files("emsearch").joinpath("static/index.html").read_bytes()

    def info(self) -> dict[str, Any]:
        return {"model_id": self.index.model_id, "index": self.index.path.name, "dim": self.index.dim,
                "ntotal": self.index.ntotal, "languages": self.index.languages(), "limits": asdict(self.limits)}

    def search(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HTTPError(400, 'the body must be a JSON object like {"texts": ["..."], "k": 10}')
        unknown = sorted(set(body) - {"texts", "k", "langs", "nprobe"})
        if unknown:
            raise HTTPError(400, f"unknown field(s) {', '.join(unknown)}; use texts, k, langs, nprobe")
        if "texts" not in body:
            raise HTTPError(400, 'missing "texts": a list of query strings')
        try:
            request = SearchRequest.checked(body["texts"], body.get("k", min(10, self.limits.max_k)), body.get("langs"),
                                            body.get("nprobe"), max_k=self.limits.max_k,
                                            max_texts=self.limits.max_texts)
            with self.lock:
                hits = run(self.index, request)
        except EmsearchError as e:  # anything else is a bug: HTTP 500
            raise HTTPError(400, str(e)) from None
        return {"results": [[hit_json(i, q, h) for h in found] for i, (q, found) in enumerate(zip(request.texts,
                                                                                                  hits))]}


class Handler(BaseHTTPRequestHandler):
    service: SearchService  # set on the per-server subclass by `make_server`
    quiet = False
    timeout = 30  # seconds a client may take to send its request

    def send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def answer(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        try:
            routes = {"/": ("GET",), "/health": ("GET",), "/info": ("GET",), "/search": ("POST",)}
            if path not in routes:
                raise HTTPError(404, f"no such endpoint {path}; try GET /info or POST /search")
            if method not in routes[path]:
                raise HTTPError(405, f"{path} takes {routes[path][0]}, not {method}")
            if path == "/":
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(self.service.page)))
                self.end_headers()
                self.wfile.write(self.service.page)
            elif path == "/health":
                self.send_json(200, {"status": "ok"})
            elif path == "/info":
                self.send_json(200, self.service.info())
            else:
                self.send_json(200, self.service.search(self.read_json()))
        except HTTPError as e:
            self.close_connection = True
            self.send_json(e.status, {"error": str(e)})
        except Exception as e:  # a bug must cost one request, not the service
            self.log_message("error: %s: %s", type(e).__name__, e)
            self.close_connection = True
            self.send_json(500, {"error": f"internal error ({type(e).__name__}); the request was not answered"})

    def read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "send the body with a Content-Length, not chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            raise HTTPError(411, "a Content-Length header is required")
        try:
            n = int(length)
        except ValueError:
            raise HTTPError(400, f"bad Content-Length {length!r}") from None
        if n < 0 or n > self.service.limits.max_body:
            raise HTTPError(413, f"body of {n} bytes; at most {self.service.limits.max_body} are accepted")
        raw = self.rfile.read(n)
        if len(raw) < n:
            raise HTTPError(400, f"body ended after {len(raw)} of {n} bytes")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HTTPError(400, f"the body is not valid UTF-8 JSON ({e})") from None

    def do_GET(self) -> None:
        self.answer("GET")

    def do_POST(self) -> None:
        self.answer("POST")

    def do_PUT(self) -> None:
        self.answer("PUT")

    def do_DELETE(self) -> None:
        self.answer("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(service: SearchService, host: str = "127.0.0.1", port: int = 8080,
                quiet: bool = False) -> ThreadingHTTPServer:
    """A bound, not yet running server (port 0 picks a free port: read `server.server_address`)."""
    handler = type("BoundHandler", (Handler,), {"service": service, "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
