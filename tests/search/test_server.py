"""The HTTP service on a real toy index: the JSON API, bad requests (4xx, the service keeps serving), concurrent
requests, and the search page in headless Chromium where it is installed."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import serving
from test_query import HIT_KEYS
from toy_index import build_toy_index
from emsearch.errors import EmsearchError
from emsearch.server import Limits, SearchService, make_server


@pytest.fixture(scope="module")
def toy(tiny_model, tmp_path_factory):
    return build_toy_index(tmp_path_factory.mktemp("server_index"), tiny_model)


@pytest.fixture(scope="module")
def server(toy):
    with serving(toy.path, Limits(max_body=4096, max_k=20, max_texts=8)) as served:
        yield served


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict | str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read().decode("utf-8")
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(data) if is_json else data
    finally:
        conn.close()


def search(port: int, payload) -> tuple[int, dict]:
    return call(port, "POST", "/search", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def test_health_and_info(server):
    port, index = server
    assert call(port, "GET", "/health") == (200, {"status": "ok"})
    status, info = call(port, "GET", "/info")
    assert status == 200 and info["ntotal"] == index.ntotal == 420 and info["model_id"] == index.model_id
    assert info["languages"] == {"deu": 210, "eng": 210} and info["limits"]["max_k"] == 20


def test_search(server, toy):
    port, index = server
    status, body = search(port, {"texts": [toy.deu[3], toy.eng[5]], "k": 4, "langs": ["en"]})
    assert status == 200 and len(body["results"]) == 2
    first, second = body["results"]
    assert all(set(h) == HIT_KEYS for h in first + second)
    assert [h["rank"] for h in first] == [1, 2, 3, 4] and all(h["lang"] == "eng" for h in first + second)
    assert first[0]["id"] == "en-3" and first[0]["query"] == toy.deu[3] and second[0]["query_index"] == 1
    assert second[0]["id"] == "en-5" and second[0]["score"] == pytest.approx(1.0, abs=1e-3)
    direct = index.search([toy.deu[3]], k=4, langs=["eng"])[0]
    assert [h["id"] for h in first] == [h.id for h in direct]
    status, body = search(port, {"texts": [toy.deu[3]], "k": 4, "langs": ["en"], "lang": "de"})  # the query's
    assert status == 200 and [h["id"] for h in body["results"][0]] == [h["id"] for h in first]  # (corpus-centred)


@pytest.mark.parametrize("payload, status, message", [
    ({"k": 3}, 400, "missing \"texts\""),
    ({"texts": "hello"}, 400, "list"),
    ({"texts": []}, 400, "no query"),
    ({"texts": ["  "]}, 400, "empty"),
    ({"texts": ["hi"], "k": 0}, 400, "k must be"),
    ({"texts": ["hi"], "k": 21}, 400, "k must be"),
    ({"texts": ["hi"], "k": "5"}, 400, "k must be"),
    ({"texts": ["hi"], "langs": ["xx9"]}, 400, "unknown language"),
    ({"texts": ["hi"], "langs": ["fr"]}, 400, "not in the index"),
    ({"texts": ["hi"], "lang": 7}, 400, "lang must be the language code"),
    ({"texts": ["hi"], "lang": "xx9"}, 400, "unknown language"),
    ({"texts": ["hi"] * 9}, 400, "at most 8"),
    ({"texts": ["hi"], "kk": 3}, 400, "unknown field"),
    (["hi"], 400, "JSON object"),
])
def test_bad_requests(server, payload, status, message):
    port, _ = server
    got, body = search(port, payload)
    assert got == status and message in body["error"], body


def test_malformed_http(server):
    port, _ = server
    status, body = call(port, "POST", "/search", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "not valid UTF-8 JSON" in body["error"]
    status, body = call(port, "POST", "/search", b"\xff\xfe", {"Content-Type": "application/json"})
    assert status == 400
    status, body = call(port, "POST", "/search", None, {"Content-Length": "99999999"})
    assert status == 413 and "at most 4096" in body["error"]
    status, body = call(port, "POST", "/search", None, {"Content-Length": "ten"})
    assert status == 400
    assert call(port, "GET", "/search")[0] == 405
    assert call(port, "POST", "/health", b"{}")[0] == 405
    assert call(port, "GET", "/nope")[0] == 404
    assert call(port, "DELETE", "/info")[0] == 405
    # still serving after all of that
    assert call(port, "GET", "/health") == (200, {"status": "ok"})
    assert search(port, {"texts": ["ka001 ka002"], "k": 1})[0] == 200


def test_concurrent_requests_get_their_own_answers(server, toy):
    port, _ = server
    queries = toy.deu[:24]
    expected = [search(port, {"texts": [q], "k": 3, "langs": ["eng"]})[1]["results"][0] for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda q: search(port, {"texts": [q], "k": 3, "langs": ["eng"]}), queries))
    assert all(status == 200 for status, _ in got)
    assert [body["results"][0] for _, body in got] == expected


def test_openapi_lists_the_real_endpoints(server):
    """/openapi.json documents every route the server answers, with the hit shape of `emsearch query --json`."""
    port, _ = server
    status, api = call(port, "GET", "/openapi.json")
    assert status == 200 and api["openapi"].startswith("3.")
    assert {path: sorted(ops) for path, ops in api["paths"].items()} == {
        "/": ["get"], "/health": ["get"], "/info": ["get"], "/search": ["post"], "/openapi.json": ["get"]}
    for path, ops in api["paths"].items():
        for method in ops:
            body = b'{"texts": ["hi"]}' if method == "post" else None
            assert call(port, method.upper(), path, body)[0] == 200, (method, path)
    schemas = api["components"]["schemas"]
    assert set(schemas["Hit"]["properties"]) == set(schemas["Hit"]["required"]) == HIT_KEYS
    request = schemas["SearchRequest"]["properties"]
    assert request["k"]["maximum"] == 20 and request["texts"]["maxItems"] == 8  # this server's limits
    status, info = call(port, "GET", "/info")
    assert set(info) == set(schemas["Info"]["required"])


def test_openapi_example_request_works(server):
    """The documented example request, sent as documented, is answered in the documented shape."""
    port, _ = server
    _, api = call(port, "GET", "/openapi.json")
    operation = api["paths"]["/search"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    status, body = search(port, example)
    assert status == 200 and len(body["results"]) == len(example["texts"])
    assert all(len(hits) == example["k"] and all(h["lang"] == "eng" and set(h) == HIT_KEYS for h in hits)
               for hits in body["results"])
    documented = operation["responses"]["200"]["content"]["application/json"]["example"]
    assert all(set(h) == HIT_KEYS for hits in documented["results"] for h in hits)


def test_serve_port_in_use(toy, capsys, monkeypatch):
    """A taken port is one error line that names it and points to --port, not an errno."""
    import socket

    from conftest import run_cli

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        code, _, err = run_cli(["serve", str(toy.path), "--port", str(port), "--quiet"], capsys, monkeypatch)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert f"port {port} on 127.0.0.1 is already in use" in err and "--port" in err and "Errno" not in err


def test_search_page_served(server):
    port, _ = server
    status, page = call(port, "GET", "/")
    assert status == 200 and "<form" in page and 'fetch("search"' in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched from elsewhere


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium (Debian's chromium) not installed")
def test_search_page_in_chromium(server, toy, tmp_path):
    """The page reads ?q= and &lang=, calls /info and /search, and renders the hits with language tags."""
    port, _ = server
    url = f"http://127.0.0.1:{port}/?" + urllib.parse.urlencode({"q": toy.deu[9], "lang": "eng", "k": 5})
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert result.returncode == 0 and "<ol" in dom, result.stderr[-2000:]
    assert dom.count('class="hit"') == 5, dom[-3000:]
    assert dom.count('<span class="lang">eng</span>') == 5
    assert 'data-id="en-9"' in dom and toy.eng[9] in dom
    assert "5 results" in dom and '<option value="deu">' in dom


@pytest.mark.slow
def test_serve_command(toy, tmp_path, capsys, monkeypatch):
    """`emsearch serve` with no INDEX picks the only index under ./indexes, serves, and stops on Ctrl-C."""
    import os
    import signal
    import socket
    import sys
    import time

    from conftest import run_cli

    (tmp_path / "indexes").mkdir()
    (tmp_path / "indexes" / "toy").symlink_to(toy.path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "emsearch.cli", "serve", "--port", str(port), "--quiet"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            # a shell's background job ignores SIGINT, and a child inherits that: Ctrl-C is the test
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180  # a loaded CI machine takes a while to import torch
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if call(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        status, info = call(port, "GET", "/info")
        assert status == 200 and info["index"] == "toy"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert f"http://127.0.0.1:{port}/" in err and proc.returncode == 130

    (tmp_path / "indexes" / "other").mkdir()
    (tmp_path / "indexes" / "other" / "manifest.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["serve", "--port", str(port)], capsys, monkeypatch)
    assert code == 2 and "choose one with --index" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("limits", [{"max_k": 0}, {"max_k": 10_001}, {"max_texts": 0}, {"max_body": 1023}])
def test_limits_check_themselves(limits, toy, capsys, monkeypatch):
    """Out-of-range limits are refused by `Limits` itself, so the CLI and a Python caller get the same line."""
    from conftest import run_cli

    with pytest.raises(EmsearchError, match="limits: --max-k from 1 to 10000"):
        Limits(**limits)
    flag, value = next(iter(limits.items()))
    code, _, err = run_cli(["serve", str(toy.path), f"--{flag.replace('_', '-')}", value], capsys, monkeypatch)
    assert code == 2 and err.startswith("error: limits: --max-k from 1 to 10000") and len(err.splitlines()) == 1


def test_serve_host_is_checked_and_an_exposed_service_warned(toy, capsys, monkeypatch):
    from conftest import run_cli
    from emsearch.server import _Server

    monkeypatch.setattr(_Server, "serve_forever", lambda self: None)  # bound, announced, then stopped at once
    code, _, err = run_cli(["serve", str(toy.path), "--host", "0.0.0.0", "--port", "0"], capsys, monkeypatch)
    assert code == 0 and "warning: listening on 0.0.0.0: anyone who can reach this machine" in err
    code, _, err = run_cli(["serve", str(toy.path), "--port", "0"], capsys, monkeypatch)
    assert code == 0 and "warning" not in err
    code, _, err = run_cli(["serve", str(toy.path), "--host", "300.1.1.1", "--port", "0"], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: cannot listen on --host 300.1.1.1 (") and "e.g. 127.0.0.1" in err


def test_quiet_hides_requests_but_not_internal_errors(server, capsys):
    port, index = server
    service = SearchService(index)
    service.search = lambda body: 1 / 0  # a bug
    httpd = make_server(service, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        capsys.readouterr()
        assert call(httpd.server_address[1], "GET", "/health")[0] == 200
        status, body = search(httpd.server_address[1], {"texts": ["ka001"]})
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    err = capsys.readouterr().err
    assert status == 500 and body == {"error": "internal error (ZeroDivisionError); the request was not answered"}
    assert "error: ZeroDivisionError: division by zero" in err and "GET /health" not in err
