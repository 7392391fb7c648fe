"""The prediction service over a real uvicorn server on loopback: endpoints, validation, overload,
a bounded load test that checks every answer against its own input, graceful shutdown, and
property-based fuzzing of the OpenAPI schema with schemathesis."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
import httpx
import pytest
from conftest import BIN, free_port, run_cli, wait_ready

pytestmark = pytest.mark.timeout(600)


class Server:
    "`mlops-basics-serve` in its own process on a free loopback port; stdout kept for the log lines."
    def __init__(self, bundle: Path, tmp: Path, **settings):
        self.port, self.log = free_port(), tmp / f"serve-{time.time_ns()}.log"
        env = {**os.environ, **{f"MLOPS_BASICS_SERVE_{k.upper()}": str(v) for k, v in settings.items()}}
        self.proc = subprocess.Popen([str(BIN / "mlops-basics-serve"), "--bundle", str(bundle), "--port", str(self.port)],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(self.url, 30, self.proc, self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def lines(self) -> list[dict]:
        return [e for e in (json.loads(l) for l in self.log.read_text().splitlines() if l.startswith("{")) if e.get("event") == "prediction"]


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    s = Server(bundle, tmp_path_factory.mktemp("serve"), precision="fp32", max_sentences=16)
    yield s
    s.stop()


def alone(bundle, precision: str = "fp32"):
    "Predictions of the same bundle, one sentence at a time, without the service (both precisions ignore the batch)."
    from mlops_basics.predict import Predictor
    p = Predictor(bundle, precision)
    return lambda s: p.predict([s])[0]


@pytest.fixture(scope="module")
def reference(bundle):
    return alone(bundle, "fp32")


def test_serving_path_imports_no_training_stack():
    code = "import sys, mlops_basics.serve; print(sorted(m for m in ('torch', 'lightning', 'transformers', 'datasets', 'hydra') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_health_ready_and_metrics(server, bundle):
    version = json.loads((bundle / "manifest.json").read_text())["version"]
    assert httpx.get(server.url + "/health").json() == {"status": "alive"}
    r = httpx.get(server.url + "/ready").json()
    assert r["status"] == "ready" and r["model_version"] == version and r["precision"] == "fp32"
    httpx.get(server.url + "/predict", params={"text": "The cat saw the ball."})
    m = httpx.get(server.url + "/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    for name in ("mlops_requests_total", "mlops_request_latency_seconds_bucket", "mlops_batch_size_sentences_count",
                 "mlops_errors_total", "mlops_queue_depth", f'mlops_model_info{{precision="fp32",version="{version}"}}'):
        assert name in m.text, name


def test_post_and_get_predict_answer_each_sentence_with_the_model_version(server, reference, bundle):
    version = json.loads((bundle / "manifest.json").read_text())["version"]
    sents = ["The cat saw the ball.", "ball the saw cat The.", "A dog found a book."]
    r = httpx.post(server.url + "/predict", json={"sentences": sents}, headers={"X-Request-ID": "req-42"})
    assert r.status_code == 200 and r.headers["x-model-version"] == version and r.headers["x-request-id"] == "req-42"
    body = r.json()
    assert body["model_version"] == version and body["request_id"] == "req-42"
    for s, p in zip(sents, body["predictions"], strict=True):
        ref = reference(s)
        assert p == {k: ref[k] for k in ("label", "score", "truncated", "tokens")}
    g = httpx.get(server.url + "/predict", params={"text": sents[0]}).json()
    assert g["model_version"] == version and g["predictions"] == body["predictions"][:1]
    long = httpx.get(server.url + "/predict", params={"text": " ".join(["The cat saw the ball."] * 40)}).json()
    assert long["predictions"][0]["truncated"] is True


@pytest.mark.parametrize("kwargs, status, msg", [
    ({"json": {"sentences": []}}, 422, "sentences: List should have at least 1 item"),
    ({"json": {"sentences": ["ok", ""]}}, 422, "sentence 1 is empty"),
    ({"json": {"sentences": ["ok", "   "]}}, 422, "sentence 1 is empty or only whitespace"),
    ({"json": {"sentences": ["ok", 3]}}, 422, "sentences.1: Input should be a valid string"),
    ({"json": {"sentences": "just text"}}, 422, "sentences: Input should be a valid list"),
    ({"json": {"text": "x"}}, 422, "sentences: Field required"),
    ({"json": {"sentences": ["s"] * 17}}, 422, "List should have at most 16 items"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON decode error"),
    ({"content": b'{"sentences": ["' + b"x" * 70000 + b'"]}', "headers": {"content-type": "application/json"}}, 413, "over 65536 bytes"),
    # text the tokenizer cannot take: valid JSON, not valid Unicode, or nothing left after normalization
    ({"content": b'{"sentences": ["\\udcff test"]}', "headers": {"content-type": "application/json"}}, 422, "unpaired surrogate"),
    ({"content": b'{"sentences": ["ok", "x \\ud800"]}', "headers": {"content-type": "application/json"}}, 422, "sentence 1 has an unpaired"),
    ({"json": {"sentences": ["\u0000\u0001"]}}, 422, "no characters the model can read"),
    ({"json": {"sentences": ["\u200b\ufeff"]}}, 422, "no characters the model can read"),
    # bodies the JSON parser gives up on
    ({"content": b'{"sentences": ["\xff\xfe bad"]}', "headers": {"content-type": "application/json"}}, 400, "not JSON"),
    ({"content": b'{"sentences": ' + b"[" * 30000 + b"]" * 30000 + b"}", "headers": {"content-type": "application/json"}}, 400, "not JSON"),
    ({"content": b'{"sentences": ["a"], "n": ' + b"1" * 5000 + b"}", "headers": {"content-type": "application/json"}}, 400, "not JSON"),
])
def test_bad_requests_get_clear_4xx_without_stack_traces(server, kwargs, status, msg):
    r = httpx.post(server.url + "/predict", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert msg in body["error"] and body["request_id"] and "Traceback" not in r.text
    assert body["fix"] and r.headers["x-request-id"] == body["request_id"]


def test_get_predict_validation(server):
    assert httpx.get(server.url + "/predict").status_code == 422
    r = httpx.get(server.url + "/predict", params={"text": "  "})
    assert r.status_code == 422 and "empty" in r.json()["error"]
    r = httpx.get(server.url + "/nowhere")
    assert r.status_code == 404 and "/predict" in r.json()["fix"]
    r = httpx.delete(server.url + "/predict")
    assert r.status_code == 405 and r.json()["fix"]
    r = httpx.get(server.url + "/predict", params={"text": "\u0000"})
    assert r.status_code == 422 and "no characters" in r.json()["error"]
    # the longest GET sentence the schema allows fits the server's request-line limit, even percent-encoded
    r = httpx.get(server.url + "/predict", params={"text": "\U0001f600" * 1000})  # 12 KB of URL
    assert r.status_code == 200, r.text
    r = httpx.get(server.url + "/predict", params={"text": "\U0001f600 " * 500})
    assert r.status_code == 200 and r.json()["predictions"][0]["truncated"]
    r = httpx.get(server.url + "/predict", params={"text": "a" * 1001})
    assert r.status_code == 422 and r.json()["fix"]


def test_fast_lane_answers_get_predict_exactly_as_fastapi_does(server, bundle, tmp_path):
    "The default fast lane and FastAPI's own route (fast_lane=0) give the same status, body and headers to the same GETs."
    plain = Server(bundle, tmp_path, precision="fp32", max_sentences=16, fast_lane=0)
    queries = [{"text": "The cat saw the ball."}, {"text": "café + crème brûlée, 100% sure & fine?"}, {"text": "\U0001f600" * 1000},
               {"text": "a" * 1001}, {"text": ""}, {"text": "  "}, {"text": "\u0000"}, {}, {"text": "x", "y": "1"},
               [("text", "first"), ("text", "second one")], {"txt": "x"}]
    try:
        for q in queries:
            a = httpx.get(server.url + "/predict", params=q, headers={"X-Request-ID": "same-id"})
            b = httpx.get(plain.url + "/predict", params=q, headers={"X-Request-ID": "same-id"})
            assert (a.status_code, a.json()) == (b.status_code, b.json()), q
            assert [a.headers.get(h) for h in ("content-type", "x-request-id", "x-model-version")] == \
                   [b.headers.get(h) for h in ("content-type", "x-request-id", "x-model-version")]
        metrics = httpx.get(server.url + "/metrics").text
    finally:
        plain.stop()
    assert 'mlops_requests_total{endpoint="/predict",method="GET",status="200"}' in metrics  # framed and counted


def test_one_json_log_line_per_prediction(server):
    before = len(server.lines())
    httpx.post(server.url + "/predict", json={"sentences": ["One here.", "And two here."]}, headers={"X-Request-ID": "log-test"})
    time.sleep(0.2)
    new = [l for l in server.lines()[before:] if l["request_id"] == "log-test"]
    assert len(new) == 2
    for line in new:
        assert set(line) >= {"event", "request_id", "model_version", "text_length", "label", "score", "latency_ms"}
    assert sorted(l["text_length"] for l in new) == [9, 13]
    assert "One here." not in server.log.read_text()  # the text itself is not logged


async def _load(url: str, n: int, conc: int, sentences: list[str]) -> list[tuple]:
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=conc)) as c:
        async def one(i: int):
            async with sem:
                k = 1 + i % 3  # 1, 2 or 3 sentences per request, mixing GET and POST
                sents = [sentences[(i + j) % len(sentences)] for j in range(k)]
                if k == 1 and i % 2:
                    r = await c.get("/predict", params={"text": sents[0]})
                else:
                    r = await c.post("/predict", json={"sentences": sents})
                return sents, r.status_code, r.json()
        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_bounded_load_no_errors_no_lost_or_mixed_up_answers(server, bundle, tmp_path, precision):
    "Every answer is checked against its own sentence predicted alone: batching mixes nothing up and changes no score."
    sentences = [" ".join(["word"] * k) + " ends here." for k in range(1, 60)]  # every length differs
    reference = alone(bundle, precision)
    expected = {s: reference(s) for s in sentences}
    if precision != "fp32":
        server = Server(bundle, tmp_path, precision=precision, max_sentences=16)
    try:
        results = asyncio.run(_load(server.url, n=600, conc=32, sentences=sentences))
        m = httpx.get(server.url + "/metrics").text
    finally:
        if precision != "fp32":
            server.stop()
    assert len(results) == 600
    assert [code for _, code, _ in results if code != 200] == []
    for sents, _, body in results:
        assert len(body["predictions"]) == len(sents)
        for s, p in zip(sents, body["predictions"]):
            e = expected[s]
            assert p["tokens"] == e["tokens"] and p["label"] == e["label"] and abs(p["score"] - e["score"]) < 2e-4
    calls = float(next(l.split()[-1] for l in m.splitlines() if l.startswith("mlops_batch_size_sentences_count")))
    total = float(next(l.split()[-1] for l in m.splitlines() if l.startswith("mlops_batch_size_sentences_sum")))
    assert total / calls > 1.5  # concurrent requests really were batched together


def test_full_queue_answers_503_with_retry_after(bundle, tmp_path):
    s = Server(bundle, tmp_path, queue_size=1, max_batch=1, max_wait_ms=0)
    try:
        results = asyncio.run(_load(s.url, n=120, conc=48, sentences=["The cat saw the ball.", "A dog."]))
    finally:
        s.stop()
    codes = [c for _, c, _ in results]
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes
    r503 = [b for _, c, b in results if c == 503]
    assert all("capacity" in b["error"] for b in r503)
    # the header, on a fresh overloaded server
    s = Server(bundle, tmp_path, queue_size=1, max_batch=1, max_wait_ms=0)
    try:
        async def burst():
            async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
                return await asyncio.gather(*(c.post("/predict", json={"sentences": ["x y z."] * 16}) for _ in range(40)))
        rs = asyncio.run(burst())
    finally:
        s.stop()
    assert any(r.status_code == 503 and r.headers.get("retry-after") == "1" for r in rs)


def test_graceful_shutdown_finishes_in_flight_requests(bundle, tmp_path):
    s = Server(bundle, tmp_path, max_wait_ms=300, max_batch=64)  # requests wait 300 ms to fill a batch

    async def go():
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            tasks = [asyncio.create_task(c.post("/predict", json={"sentences": [f"Sentence {i} here."]})) for i in range(8)]
            await asyncio.sleep(0.1)  # all sent, all waiting in the batcher
            s.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)
    rs = asyncio.run(go())
    assert [r.status_code for r in rs] == [200] * 8
    assert s.proc.wait(30) in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    log = s.log.read_text()
    assert "Waiting for application shutdown" in log and "Finished server process" in log


def test_bad_bundle_or_settings_stop_the_server_at_start_with_one_line(tmp_path, bundle, home):
    r = run_cli("mlops-basics-serve", "--bundle", str(tmp_path / "missing"), "--port", str(free_port()), home=home, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("mlops-basics-serve: error: model bundle not found")
    r = run_cli("mlops-basics-serve", "--bundle", str(bundle), home=home, timeout=60, MLOPS_BASICS_SERVE_MAX_BATCH="lots")
    assert r.returncode == 2 and "MLOPS_BASICS_SERVE_MAX_BATCH='lots' is not a valid int" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("mlops-basics-serve", "--help", home=home, timeout=60)
    assert r.returncode == 0 and "POST /predict" in r.stdout and "MLOPS_BASICS_SERVE_" in r.stdout
    from dataclasses import fields
    from mlops_basics.contract import ServeSettings
    listed = " ".join(r.stdout.split())  # every setting with its default, whatever the wrapping
    assert all(f"{f.name.upper()}=" in listed for f in fields(ServeSettings) if f.name != "bundle")
    assert "WORKERS=0" in listed and "FAST_LANE=1" in listed


def test_openapi_schema_fuzzing_finds_no_server_errors(server, tmp_path):
    r = subprocess.run([str(BIN / "schemathesis"), "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error",
                        "--max-examples", "60", "--workers", "1", "--no-color"],
                       capture_output=True, text=True, timeout=500, cwd=tmp_path,
                       env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    import re
    assert "Tested: 5" in r.stdout  # POST /predict, GET /predict, /health, /ready, /metrics
    n = re.search(r"(\d+) generated, (\d+) passed", r.stdout)
    assert n and int(n.group(1)) >= 50 and n.group(1) == n.group(2), r.stdout[-1500:]


def _rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def _read_answer(sock: socket.socket) -> bytes:
    "Everything the server sends until it closes the connection (its error answers say Connection: close)."
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except OSError:
        pass
    return out


def _chunked_upload(port: int, mb: int) -> bytes:
    "POST /predict with a chunked body of `mb` MB (sent until the server stops reading); the response bytes."
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % (1 << 20) + b"a" * (1 << 20) + b"\r\n"
    try:
        for _ in range(mb):
            s.sendall(chunk)
        s.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed the connection: what we want
    try:
        return _read_answer(s)
    finally:
        s.close()


def test_chunked_uploads_are_cut_at_the_limit_and_memory_stays_bounded(server):
    base = _rss_mb(server.proc.pid)
    answer = _chunked_upload(server.port, 160)  # 160 MB, no Content-Length
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert "over 65536 bytes" in body["error"] and body["fix"]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as ex:  # eight at once
        answers = list(ex.map(lambda _: _chunked_upload(server.port, 40), range(8)))
    assert all(a.startswith(b"HTTP/1.1 413") for a in answers), [a[:40] for a in answers]
    assert _rss_mb(server.proc.pid) - base < 40  # the bodies were never held in memory
    assert httpx.post(server.url + "/predict", json={"sentences": ["Still here."]}).status_code == 200


def test_slow_bodies_get_408_and_too_many_requests_in_flight_get_503(bundle, tmp_path):
    s = Server(bundle, tmp_path, body_timeout_s=1, max_in_flight=2)
    try:
        slow = []
        for _ in range(2):  # two clients that send half a body and stall: they hold both slots
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"sent")
            slow.append(c)
        time.sleep(0.3)
        r = httpx.post(s.url + "/predict", json={"sentences": ["A third request."]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "in flight" in r.json()["error"], r.text
        for c in slow:
            answer = _read_answer(c)
            assert answer.startswith(b"HTTP/1.1 408") and b"not received within 1 s" in answer, answer[:300]
            c.close()
        assert httpx.post(s.url + "/predict", json={"sentences": ["Slots are free again."]}).status_code == 200
        m = httpx.get(s.url + "/metrics").text
        assert 'mlops_errors_total{kind="body_timeout"} 2.0' in m and 'mlops_errors_total{kind="busy"} 1.0' in m
    finally:
        s.stop()


@pytest.mark.browser
def test_docs_page_renders_in_chromium_without_internet(server, chromium_ready, tmp_path):
    "Swagger UI's scripts come from the service itself (no CDN), so /docs renders every endpoint offline."
    from mlops_basics.core import rendered_html, screenshot
    html = rendered_html(server.url + "/docs")
    assert "cdn.jsdelivr.net" not in html and "/static-offline-docs/swagger-ui-bundle.js" in html
    for path in ("/predict", "/health", "/ready", "/metrics"):  # written into the page by Swagger UI's script
        assert f'data-path="{path}"' in html, path
    png = screenshot(server.url + "/docs", tmp_path / "docs.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_model_calls_run_per_core_by_default_and_the_workers_setting_is_checked(bundle, tmp_path, home):
    "A real server logs the calls it runs at once; 3 workers answer every request right; bad values stop it in one line."
    cores = len(os.sched_getaffinity(0))
    s = Server(bundle, tmp_path)
    s.stop()
    assert f"workers {cores} x threads 1" in s.log.read_text()
    s = Server(bundle, tmp_path, workers=3, threads=1, precision="fp32")
    try:
        sents = [f"The cat number {i} saw the ball." for i in range(24)]
        results = asyncio.run(_load(s.url, n=96, conc=24, sentences=sents))
    finally:
        s.stop()
    assert "workers 3 x threads 1" in s.log.read_text()
    expect = alone(bundle)
    assert all(c == 200 for _, c, _ in results)
    for sents, _, body in results:  # each answer is its own sentences', whichever worker ran it
        assert [p["label"] for p in body["predictions"]] == [expect(x)["label"] for x in sents]
    r = run_cli("mlops-basics-serve", "--bundle", str(bundle), home=home, timeout=60, MLOPS_BASICS_SERVE_WORKERS="-1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "_WORKERS must not be negative" in r.stderr
