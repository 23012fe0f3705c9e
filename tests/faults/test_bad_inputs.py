"""The bad-input corpus (`bad_inputs.py`) against the CLI, the Python API and the server: each input answered as
documented, a refusal one line (CLI, exit 2), a typed error (Python) or a JSON 4xx (HTTP), never a traceback or
a 500; and the server goes on serving."""

from __future__ import annotations

import http.client
import json
import socket
import time

import numpy as np
import pytest

from bad_inputs import BODIES, CORPUS_FILES, FIELDS, QUERIES
from faulty import one_line_error, one_thread  # noqa: F401
from conftest import run_cli, serving
from toy_index import build_toy_index
from emsearch.errors import EmsearchError
from emsearch.index import Index
from emsearch.search.query import QueryError, SearchRequest
from emsearch.server import Limits


@pytest.fixture(scope="module")
def toy(tiny_model, tmp_path_factory):
    return build_toy_index(tmp_path_factory.mktemp("bad_inputs"), tiny_model, n=40, n_noise=10)


@pytest.fixture(scope="module")
def server(toy):
    with serving(toy.path, Limits(read_seconds=1)) as served:
        yield served


def post(port: int, body: bytes, method: str = "POST", path: str = "/search",
         headers: dict | None = None) -> tuple[int, dict | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


def raw(port: int, request: bytes, shut: bool = False) -> tuple[int | None, dict, float]:
    """Send `request` as it is (and half-close with `shut`); the status, JSON body and seconds to the answer. An
    unreadable request line is answered as HTTP/0.9 (the body alone): status None."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        t0 = time.monotonic()
        s.sendall(request)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if data.startswith(b"{"):
        return None, json.loads(data), time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/json" in head, head
    return int(head.split()[1]), json.loads(body), time.monotonic() - t0


@pytest.mark.parametrize("name", QUERIES)
def test_query_texts_everywhere(toy, server, name, capsys, monkeypatch):
    text, error = QUERIES[name]
    port, index = server
    code, out, err = run_cli(["query", text, "--index", toy.path, "--json"], capsys, monkeypatch)
    if error is None:
        assert code == 0 and json.loads(out.splitlines()[0])["query"] == text
    else:
        assert error in one_line_error(code, err)
    status, body = post(port, json.dumps({"texts": [text], "k": 2}).encode())
    assert (status, error is None or error in body["error"]) == (200 if error is None else 400, True), body
    if error is None or "Unicode" not in error:  # empty and long texts are the request's limits, not the API's
        assert len(index.search([text], k=2)[0]) == 2
    else:
        with pytest.raises(EmsearchError, match="not valid Unicode"):
            index.search([text], k=2)


@pytest.mark.parametrize("name", FIELDS)
def test_json_fields(server, name):
    body, error = FIELDS[name]
    port, _ = server
    data = json.dumps(body, ensure_ascii=True).encode()
    status, answer = post(port, data)
    assert (status, error is None or error in answer["error"]) == (200 if error is None else 400, True), answer
    if "texts" in body and set(body) <= {"texts", "k", "langs", "nprobe"}:  # the same through the Python API
        args = body["texts"], body.get("k", 10), body.get("langs"), body.get("nprobe")
        if error is None:
            SearchRequest.checked(*args)
        else:
            with pytest.raises(EmsearchError, match=error.replace("(", r"\(").replace(")", r"\)")):
                SearchRequest.checked(*args)


@pytest.mark.parametrize("name", BODIES)
def test_raw_bodies(server, name):
    body, error = BODIES[name]
    status, answer = post(server[0], body)
    assert status == 400 and error in answer["error"], answer


def test_http_protocol_faults(server):
    port, _ = server
    search = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, body, _ = raw(port, search + b"Content-Length: -5\r\n\r\n")
    assert status == 400 and "bad Content-Length '-5'" in body["error"]
    status, body, _ = raw(port, search + b"Content-Length: ten\r\n\r\n")
    assert status == 400
    # a body shorter than announced: answered as soon as the client is done (400), or after read_seconds (408)
    status, body, _ = raw(port, search + b'Content-Length: 100\r\n\r\n{"texts"', shut=True)
    assert status == 400 and "body ended after 8 of 100 bytes" in body["error"]
    status, body, seconds = raw(port, search + b'Content-Length: 100\r\n\r\n{"texts"')
    assert status == 408 and seconds < 5 and "did not arrive within 1 s" in body["error"]
    for method in ("HEAD", "OPTIONS", "PATCH", "PUT"):
        status, body = post(port, b"", method=method, path="/health")
        assert status == 405 and (method == "HEAD" or "/health takes GET" in body["error"])
    status, body, _ = raw(port, b"BREW /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and "Unsupported method" in body["error"]
    status, body, _ = raw(port, b"GET /health HTTP/x.y\r\n\r\n")
    assert status is None and "Bad request version" in body["error"]
    assert post(port, b"", method="GET", path="/health") == (200, {"status": "ok"})  # still serving


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_files_for_build_index_and_embed(tiny_model, tmp_path, name, capsys, monkeypatch):
    file, content, extra, error = CORPUS_FILES[name]
    corpus = tmp_path / file
    corpus.write_bytes(content)
    code, _, err = run_cli(["build-index", corpus, "--out", tmp_path / "idx", "--model", tiny_model, *extra],
                           capsys, monkeypatch)
    if error is None:
        assert code == 0, err
        with Index.open(tmp_path / "idx") as index:
            assert index.records([0])[0].text.startswith("\u200fka001" if "RTL" in name else "ka001")
    else:
        assert error in one_line_error(code, err)
    lang = extra[extra.index("--lang"):][:2] if "--lang" in extra else []
    code, _, err = run_cli(["embed", corpus, "-o", tmp_path / "x.npy", "--model", tiny_model, *lang], capsys,
                           monkeypatch)
    if error is None:
        assert code == 0 and np.load(tmp_path / "x.npy").shape[0] >= 1, err
    else:
        assert error in one_line_error(code, err)
        assert not (tmp_path / "x.npy").exists()


def test_python_api_refuses_what_cannot_be_encoded(toy):
    with Index.open(toy.path) as index:
        with pytest.raises(EmsearchError, match="text 1 is not valid Unicode"):
            index.encoder.encode(["ka001", "\udc80"])
    with pytest.raises(QueryError, match="query 2 is not valid Unicode"):
        SearchRequest.checked(["ka001", "\ud800x"])
