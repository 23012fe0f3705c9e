"""The HTTP search service: one index and its encoder loaded once, a JSON API and a small search page.

    emsearch serve indexes/news --port 8080
    curl -s localhost:8080/search -d '{"texts": ["Guten Morgen"], "k": 5, "langs": ["en"]}'

Endpoints:
    GET  /              the search page (self-contained HTML, no network needed)
    GET  /health        {"status": "ok"}
    GET  /info          model, index size, languages and the request limits
    POST /search        {"texts": [...], "k": 10, "langs": ["en", ...] | null, "nprobe": null, "lang": null}
                        → {"results": [[hit, ...], ...]}, one list per query, hit as in `emsearch query --json`
    GET  /openapi.json  the OpenAPI 3 description of all of these, request and response bodies included
`openapi` is the one description of the API: the handler routes by its paths and methods, so no endpoint exists
undocumented. Every answer but the page is JSON; a bad request is answered 4xx with {"error": "..."} (`ERRORS`
lists each code and when), and the service keeps serving; 500 means a bug, and is logged even with --quiet.
It is built on the standard library's ThreadingHTTPServer (no extra dependency): requests are read, parsed and
answered on their own threads (a slow client holds its own thread for at most `read_seconds`), and searches run
one at a time under a lock — the encoder and FAISS already use every core for one batch, so running searches side
by side would only oversubscribe the CPU, while /health stays answerable meanwhile.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import threading
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from emsearch.errors import EmsearchError
from emsearch.search.query import MAX_CHARS, SearchRequest, hit_json, run
from emsearch.version import __version__

JSON, HTML = "application/json", "text/html"
ERRORS = {  # every error code the service answers, and when: the README and /openapi.json say the same
    400: "a malformed request: not UTF-8 JSON, nested too deeply, a field of the wrong type or out of range, a "
         "body shorter than its Content-Length, a malformed request line",
    404: "no such endpoint",
    405: "the endpoint does not take this method (HEAD, OPTIONS, PATCH, ... included)",
    408: "the request (its body included) did not arrive within `read_seconds`",
    411: "a POST without a Content-Length, or chunked",
    413: "a body over `max_body` bytes",
    500: "a bug: the request was not answered, the service goes on",
    501: "an HTTP method the server does not know",
}
HIT_FIELDS = {  # the keys of `hit_json`
    "query_index": {"type": "integer", "description": "position of the query in texts"},
    "query": {"type": "string"},
    "rank": {"type": "integer", "description": "1 = best"},
    "score": {"type": "number", "description": "cosine similarity"},
    "id": {"type": "string"},
    "lang": {"type": "string", "description": "ISO 639-3"},
    "text": {"type": "string"},
    "meta": {"type": "object", "description": "the corpus's other columns for this row"},
}
EXAMPLE_SEARCH = {"texts": ["Guten Morgen"], "k": 2, "langs": ["en"]}
EXAMPLE_RESULTS = {"results": [[
    {"query_index": 0, "query": "Guten Morgen", "rank": 1, "score": 0.912, "id": "en-17", "lang": "eng",
     "text": "Good morning", "meta": {"source": "tatoeba"}},
    {"query_index": 0, "query": "Guten Morgen", "rank": 2, "score": 0.774, "id": "en-5", "lang": "eng",
     "text": "Good morning, everyone", "meta": {"source": "tatoeba"}},
]]}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_body: int = 1 << 20  # bytes of JSON
    max_k: int = 100
    max_texts: int = 64  # queries per request
    read_seconds: int = 5  # to send the request, body included: a slow or short body is answered 408, not waited on

    def __post_init__(self) -> None:
        if not 1 <= self.max_k <= 10_000 or self.max_texts < 1 or self.max_body < 1024:
            raise EmsearchError("limits: --max-k from 1 to 10000, --max-texts at least 1, --max-body at least 1024")


def openapi(limits: Limits) -> dict[str, Any]:
    """The OpenAPI 3 document served at /openapi.json, with this server's limits in the schemas."""
    def error(code: int) -> dict[str, Any]:
        return {"description": ERRORS[code], "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


    def ok(description: str, schema: str, example: Any = None, media: str = JSON) -> dict[str, Any]:
        content = {"schema": {"$ref": f"#/components/schemas/{schema}"}} if schema else {"schema": {"type": "string"}}
        if example is not None:
            content["example"] = example
        return {"200": {"description": description, "content": {media: content}}}

    string, integer = {"type": "string"}, {"type": "integer"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "emsearch", "version": __version__,
                 "description": "Cross-lingual search over one emsearch index: a query in any language finds "
                                "sentences in every language of the index."},
        "paths": {
            "/": {"get": {"summary": "the search page", "responses": ok("self-contained HTML", "", media=HTML)}},
            "/health": {"get": {"summary": "liveness", "responses": ok("serving", "Health", {"status": "ok"})}},
            "/info": {"get": {"summary": "model, index size, languages and request limits",
                              "responses": ok("the loaded index", "Info")}},
            "/search": {"post": {
                "summary": "nearest sentences for each query text",
                "requestBody": {"required": True, "content": {JSON: {
                    "schema": {"$ref": "#/components/schemas/SearchRequest"}, "example": EXAMPLE_SEARCH}}},
                "responses": {**ok("one list of hits per query, best first", "SearchResponse", EXAMPLE_RESULTS),
                              **{str(code): error(code) for code in (400, 408, 411, 413, 500)}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": ok("OpenAPI 3", "")}},
        },
        "components": {"schemas": {
            "Health": {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok"]}}},
            "Info": {"type": "object", "required": ["model_id", "index", "dim", "ntotal", "languages", "limits"],
                     "properties": {
                         "model_id": string, "index": {"type": "string", "description": "index directory name"},
                         "dim": integer, "ntotal": {"type": "integer", "description": "sentences in the index"},
                         "languages": {"type": "object", "additionalProperties": integer,
                                       "description": "sentences per ISO 639-3 code"},
                         "limits": {"type": "object", "properties": {name: integer for name in asdict(limits)}}}},
            "SearchRequest": {"type": "object", "required": ["texts"], "additionalProperties": False, "properties": {
                "texts": {"type": "array", "minItems": 1, "maxItems": limits.max_texts,
                          "items": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS}},
                "k": {"type": "integer", "minimum": 1, "maximum": limits.max_k, "default": min(10, limits.max_k)},
                "langs": {"type": "array", "nullable": True, "items": string,
                          "description": "keep only hits in these languages (ISO 639-1, 639-3 or FLORES codes); "
                                         "null: all"},
                "nprobe": {"type": "integer", "minimum": 1, "nullable": True,
                           "description": "IVF lists visited; null: the value calibrated at build time"},
                "lang": {"type": "string", "nullable": True,
                         "description": "language of the texts: an index built with --centre language centres "
                                        "them on its mean; null: the corpus mean"}}},
            "SearchResponse": {"type": "object", "required": ["results"], "properties": {"results": {
                "type": "array", "items": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}}}}},
            "Hit": {"type": "object", "required": list(HIT_FIELDS), "properties": HIT_FIELDS},
            "Error": {"type": "object", "required": ["error"], "properties": {"error": string}},
        }},
    }


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
        self.api = openapi(limits)
        self.routes = {path: tuple(m.upper() for m in ops) for path, ops in self.api["paths"].items()}

    def info(self) -> dict[str, Any]:
        return {"model_id": self.index.model_id, "index": self.index.path.name, "dim": self.index.dim,
                "ntotal": self.index.ntotal, "languages": self.index.languages(), "limits": asdict(self.limits)}

    def search(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HTTPError(400, 'the body must be a JSON object like {"texts": ["..."], "k": 10}')
        unknown = sorted(set(body) - {"texts", "k", "langs", "nprobe", "lang"})
        if unknown:
            raise HTTPError(400, f"unknown field(s) {', '.join(unknown)}; use texts, k, langs, nprobe, lang")
        if "texts" not in body:
            raise HTTPError(400, 'missing "texts": a list of query strings')
        try:
            request = SearchRequest.checked(body["texts"], body.get("k", min(10, self.limits.max_k)), body.get("langs"),
                                            body.get("nprobe"), lang=body.get("lang"), max_k=self.limits.max_k,
                                            max_texts=self.limits.max_texts)
            with self.lock:
                hits = run(self.index, request)
        except EmsearchError as e:  # anything else is a bug: HTTP 500
            raise HTTPError(400, str(e)) from None
        return {"results": [[hit_json(i, q, h) for h in found] for i, (q, found) in enumerate(zip(request.texts,
                                                                                                  hits))]}


class Handler(BaseHTTPRequestHandler):
    service: SearchService  # set on the per-server subclass by `make_server`, with `timeout` (its read_seconds)
    quiet = False

    def send_json(self, status: int, payload: Any) -> None:
        # backslashreplace: a lone surrogate echoed in an error message goes out as its JSON escape, not a crash
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8", "backslashreplace")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own answers (a malformed request line, an unknown method, headers too long) in
        JSON like every other."""
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self.send_json(code, {"error": message or HTTPStatus(code).phrase})

    def answer(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        try:
            routes = self.service.routes
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
            elif path == "/openapi.json":
                self.send_json(200, self.service.api)
            else:
                self.send_json(200, self.service.search(self.read_json()))
        except HTTPError as e:
            self.close_connection = True
            self.send_json(e.status, {"error": str(e)})
        except Exception as e:  # a bug must cost one request, not the service
            self.log_error("error: %s: %s", type(e).__name__, e)
            self.close_connection = True
            self.send_json(500, {"error": f"internal error ({type(e).__name__}); the request was not answered"})

    def read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "send the body with a Content-Length, not chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            raise HTTPError(411, "a Content-Length header is required")
        if not length.strip().isdigit():
            raise HTTPError(400, f"bad Content-Length {length[:40]!r}: give the body's size in bytes")
        n = int(length)
        if n > self.service.limits.max_body:
            raise HTTPError(413, f"body of {n} bytes; at most {self.service.limits.max_body} are accepted")
        try:
            raw = self.rfile.read(n)
        except TimeoutError:
            raise HTTPError(408, f"the body did not arrive within {self.timeout} s ({n} bytes announced)") from None
        if len(raw) < n:
            raise HTTPError(400, f"body ended after {len(raw)} of {n} bytes")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:  # ValueError: JSON, or a number of over 4,300 digits
            raise HTTPError(400, f"the body is not valid UTF-8 JSON ({e})") from None
        except RecursionError:
            raise HTTPError(400, "the body's JSON is nested too deeply") from None

    def _dispatch(self) -> None:
        self.answer(self.command)

    # every standard method is routed, so that a wrong one is a JSON 405 (an unknown one: `send_error`, 501)
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _dispatch

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not self.quiet:  # --quiet hides the request lines only: errors are still logged
            super().log_request(code, size)


class _Server(ThreadingHTTPServer):
    """The standard library's threading server, with a listen backlog for bursts of clients (its default of 5
    connections waiting to be accepted resets the rest when many clients connect at once)."""

    daemon_threads = True
    request_queue_size = 128


def make_server(service: SearchService, host: str = "127.0.0.1", port: int = 8080,
                quiet: bool = False) -> ThreadingHTTPServer:
    """A bound, not yet running server (port 0 picks a free port: read `server.server_address`)."""
    handler = type("BoundHandler", (Handler,), {"service": service, "quiet": quiet,
                                                "timeout": service.limits.read_seconds})
    return _Server((host, port), handler)


def serve(index: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8080, limits: Limits = Limits(),
          model: str | Path | None = None, quiet: bool = False, console: Console | None = None) -> None:
    """`emsearch serve`: open the index (a path, a name under indexes/, or None for the only one there) and serve
    it until Ctrl-C (KeyboardInterrupt). A taken port or an address not of this machine is one `EmsearchError`
    line; an address other than loopback is warned about on `console`, as the service has no authentication."""
    from emsearch.index.reader import Index  # torch: loaded when serving starts

    console = console or Console(stderr=True, soft_wrap=True)
    if not 0 <= port <= 65535:
        raise EmsearchError(f"--port {port}: give a port from 0 to 65535")
    with Index.open(index, model=model) as idx:
        try:
            server = make_server(SearchService(idx, limits), host, port, quiet=quiet)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise EmsearchError(f"port {port} on {host} is already in use (another emsearch serve?); "
                                    f"pick another with --port, or --port 0 for a free one") from None
            raise EmsearchError(f"cannot listen on --host {host} ({e.strerror or e}): give an address of this "
                                "machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every network)") from None
        bound_host, bound_port = server.server_address[:2]
        if not ipaddress.ip_address(bound_host).is_loopback:
            console.print(f"[yellow]warning:[/] listening on {bound_host}: anyone who can reach this machine can "
                          "query the index (there is no authentication); --host 127.0.0.1 keeps it local",
                          highlight=False)
        console.print(f"serving {idx.path} ({idx.ntotal:,} sentences, {len(idx.languages())} language(s)) "
                      f"on http://{bound_host}:{bound_port}/ — Ctrl-C stops", soft_wrap=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
