"""Benchmark: HTTP serving, side by side in one run on loopback, same bundle, same uvicorn settings, same load.

  2021 way: FastAPI, GET /predict?text=, one sentence per request, ONNX Runtime fp32, padded to 128,
            inference inside the async handler (it blocks the event loop)
  ours:     mlops-basics-serve (micro-batching, a model call per core at once, int8, padding per batch), same GET endpoint

Each server runs alone (one after the other) as a uvicorn process with one worker and no access log;
the load is --requests requests at --concurrency from an async client on the same cores (after a warm-up),
cycling through CoLA validation sentences: by default a lean one (prepared HTTP/1.1 requests on keep-alive
connections), or aiohttp with --client aiohttp. Ours gets --rounds rounds of it and the median round is
reported. The ceiling: the model alone (our predictor, token ids ready, no HTTP) at the mean batch size our
server formed (read from its /metrics), the best of one call on every core and one call per core; and, as a
second view, the same for the mix of batch sizes it formed (spread evenly within its histogram buckets).
The machine's speed drifts, so the ceiling is measured right after each round of ours, and HTTP's fraction
is the median of the rounds' fractions. Prints JSON: req/s, p50, p99, errors, the ratio, the batches formed,
the model-only throughput and HTTP's fraction of it, the CPU per request of the client, the server
and its event loop (Linux /proc); the installed size of the serve extra (a fresh venv)
and, with --image, the image size.
Target: >= 8x the throughput at equal or better p99, >= 70% of the model-only ceiling, zero errors.

    python bench/serving.py --bundle artifacts/bundle [--requests 2000] [--concurrency 32] [--image TAG]
"""
import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
import numpy as np
from machine import machine  # bench/machine.py: cores, CPU model and features
from mlops_basics.ports import free_port

def app_2021(bundle: str):
    "The 2021 course's service: ORT fp32, padded to 128, one sentence, inference in the async handler."
    import onnxruntime as ort
    from fastapi import FastAPI
    from tokenizers import Tokenizer
    m = json.loads((Path(bundle) / "manifest.json").read_text())
    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    tok.enable_truncation(128)
    tok.enable_padding(length=128, pad_id=m["pad_id"])
    sess = ort.InferenceSession(str(Path(bundle) / "model.onnx"), providers=["CPUExecutionProvider"])
    app = FastAPI()

    @app.get("/predict")
    async def predict(text: str):
        enc = tok.encode(text)
        logits = sess.run(None, {"input_ids": np.array([enc.ids], dtype=np.int64),
                                 "attention_mask": np.array([enc.attention_mask], dtype=np.int64)})[0][0]
        p = np.exp(logits - logits.max()); p /= p.sum()
        return [{"label": m["labels"][i], "score": float(p[i])} for i in range(len(p))]

    @app.get("/ready")
    async def ready():
        return {"status": "ready"}
    return app


def start(kind: str, bundle: str, port: int, precision: str, env: dict | None = None) -> subprocess.Popen:
    "One server process: the 2021 app or ours, uvicorn, one worker, no access log."
    if kind == "2021":
        cmd = [sys.executable, __file__, "--serve-2021", bundle, "--port", str(port)]
    else:
        cmd = [str(Path(sys.executable).parent / "mlops-basics-serve"), "--bundle", bundle, "--port", str(port),
               "--precision", precision]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    import httpx
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit(f"bench/serving.py: error: the {kind} server did not start")


async def load(url: str, sentences: list[str], n: int, conc: int) -> dict:
    "n GET /predict requests at concurrency conc (aiohttp: a client fast enough not to be the bottleneck)."
    import aiohttp
    sem, lat, errors = asyncio.Semaphore(conc), [], 0
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=conc),
                                     timeout=aiohttp.ClientTimeout(total=60)) as c:
        async def one(i: int):
            nonlocal errors
            async with sem:
                t0 = time.perf_counter()
                try:
                    async with c.get("/predict", params={"text": sentences[i % len(sentences)]}) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                lat.append(time.perf_counter() - t0)
                errors += not ok
        await asyncio.gather(*(one(i) for i in range(min(100, n))))  # warm-up
        lat.clear()
        errors = 0
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    return {"requests": n, "concurrency": conc, "req_per_s": round(n / wall, 1),
            "p50_ms": round(1000 * statistics.median(lat), 2), "p99_ms": round(1000 * float(np.percentile(lat, 99)), 2),
            "errors": errors, "wall_s": round(wall, 2)}


def load_raw(url: str, sentences: list[str], n: int, conc: int, timeout: float = 60.0) -> dict:
    "The same load from a lean client: one thread, epoll, conc keep-alive sockets writing prepared HTTP/1.1 GETs."
    import selectors
    from urllib.parse import quote, urlsplit
    u = urlsplit(url)
    reqs = [f"GET /predict?text={quote(s)} HTTP/1.1\r\nHost: {u.netloc}\r\n\r\n".encode() for s in sentences]

    def run(count: int) -> tuple[list[float], int, float]:
        sel, lat, errors, started, t0 = selectors.DefaultSelector(), [], 0, 0, time.perf_counter()

        def ask(sock, buf=b""):  # the next request on this socket, or close it when all have started
            nonlocal started
            if started == count:
                sel.unregister(sock)
                return sock.close()
            sock.sendall(reqs[started % len(reqs)])
            started += 1
            sel.modify(sock, selectors.EVENT_READ, [buf, time.perf_counter()])

        def connect():
            sock = socket.create_connection((u.hostname, u.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sel.register(sock, selectors.EVENT_READ, None)
            ask(sock)
        for _ in range(min(conc, count)):
            connect()
        while sel.get_map():
            events = sel.select(timeout)
            if not events:  # the server stopped answering: what is in flight failed
                errors += len(sel.get_map())
                break
            for key, _ in events:
                sock, (buf, t_req) = key.fileobj, key.data
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                buf += chunk
                head_end = buf.find(b"\r\n\r\n")
                size = next((int(l[15:]) for l in buf[:head_end].split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
                if chunk and (head_end < 0 or len(buf) < head_end + 4 + size):
                    key.data[0] = buf  # the answer is not complete yet
                    continue
                lat.append(time.perf_counter() - t_req)
                errors += not (chunk and buf[9:12] == b"200")
                if chunk:
                    ask(sock, buf[head_end + 4 + size:])
                else:  # the server closed the connection: a new one
                    sel.unregister(sock)
                    sock.close()
                    if started < count:
                        connect()
        return lat, errors, time.perf_counter() - t0
    run(min(100, n))  # warm-up
    lat, errors, wall = run(n)
    return {"requests": n, "concurrency": conc, "req_per_s": round(n / wall, 1),
            "p50_ms": round(1000 * statistics.median(lat), 2), "p99_ms": round(1000 * float(np.percentile(lat, 99)), 2),
            "errors": errors, "wall_s": round(wall, 2)}


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    "CPU seconds (user + system) a process, or one of its threads, has used so far (Linux /proc; 0 elsewhere)."
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    try:
        fields = open(path).read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(client: str, url: str, sentences: list[str], n: int, conc: int, server_pid: int) -> dict:
    "One round of load from `client`, with the CPU per request of the client, the server and its event loop."
    import resource
    use = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
    c0, s0, e0 = use(), cpu_seconds(server_pid), cpu_seconds(server_pid, server_pid)  # the main thread runs the loop
    r = load_raw(url, sentences, n, conc) if client == "lean" else asyncio.run(load(url, sentences, n, conc))
    per = lambda secs: round(1000 * secs / (n + min(100, n)), 3)  # warm-up included
    return r | {"client_cpu_ms_per_request": per(use() - c0), "server_cpu_ms_per_request": per(cpu_seconds(server_pid) - s0),
                "event_loop_cpu_ms_per_request": per(cpu_seconds(server_pid, server_pid) - e0)}


def batches_formed(url: str) -> dict:
    "The batch sizes the server formed, from its /metrics histogram: mean and how many calls fell in each bucket."
    import httpx
    text = httpx.get(url + "/metrics", timeout=10).text
    val = lambda name: float(next(l.split()[-1] for l in text.splitlines() if l.startswith(name + " ")))
    buckets, prev = {}, 0.0
    for l in text.splitlines():
        if l.startswith("mlops_batch_size_sentences_bucket"):
            le, n = l.split('le="')[1].split('"')[0], float(l.split()[-1])
            buckets[le], prev = int(n - prev), n
    n, total = val("mlops_batch_size_sentences_count"), val("mlops_batch_size_sentences_sum")
    return {"model_calls": int(n), "mean_batch": round(total / n, 2), "calls_per_bucket": buckets}  # empty buckets too: their bounds


def model_rate(p, calls: list, streams: int, seconds: float) -> float:
    "Sentences per second of `streams` threads calling the model back to back on prepared token ids."
    import threading
    done = [0] * streams
    stop = time.perf_counter() + seconds

    def work(k: int):
        j = k
        while time.perf_counter() < stop:
            ids, trunc = calls[j % len(calls)]
            p.predict_ids(ids, trunc)
            done[k], j = done[k] + len(ids), j + streams
    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def model_ceiling(bundle: str, precision: str, sentences: list[str], sizes: list[int], seconds: float = 6.0) -> dict:
    "Model-only throughput for calls of `sizes` sentences, token ids ready, no HTTP: the best of the ways to use the cores."
    from mlops_basics.predict import Predictor
    cores, out = len(os.sched_getaffinity(0)), {}
    ways = {f"1_call_{cores}_threads_spin_on": (cores, 1, True), f"1_call_{cores}_threads_spin_off": (cores, 1, False),
            f"{cores}_calls_1_thread_each": (1, cores, False)}  # the server's default is the last
    for name, (threads, streams, spin) in ways.items():
        p = Predictor(bundle, precision, threads=threads, max_batch=max(max(sizes), 128), spin=spin)
        calls, i = [], 0
        for n in sizes * max(1, len(sentences) // sum(sizes)):  # the sizes in turn, over the sentences in order
            calls.append(p.encode(sentences[i:i + n]))
            i = i + n if i + 2 * n <= len(sentences) else 0
        for ids, trunc in calls[:3]:  # warm-up
            p.predict_ids(ids, trunc)
        rates = sorted(model_rate(p, calls, streams, seconds / 9) for _ in range(3))  # the median of three: speed drifts here
        out[name] = round(rates[1], 1)
    return out | {"sentences_per_s": max(out[k] for k in ways)}


def formed_sizes(batches: dict) -> list[int]:
    "The server's model calls as batch sizes: each bucket's calls spread evenly over its sizes (histograms keep no more), interleaved (seeded)."
    import random
    sizes, lo = [], 0
    for le, n in batches["calls_per_bucket"].items():
        if le == "+Inf":
            continue
        hi = int(float(le))
        sizes += [lo + 1 + (k * (hi - lo)) // n for k in range(n)]  # bucket (lo, hi]: n calls from lo+1 up to hi
        lo = hi
    random.Random(0).shuffle(sizes)
    return sizes


def serve_extra_size() -> dict:
    "Install the serve extra into a fresh venv; its site-packages size and whether torch came along."
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "venv", d], check=True)
        r = subprocess.run([f"{d}/bin/pip", "install", "-q", f"{root}[serve]"], capture_output=True, text=True)
        if r.returncode:
            return {"error": r.stderr[-300:]}
        site = next(Path(d).glob("lib/python*/site-packages"))
        size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        return {"site_packages_mb": round(size / 1e6, 1), "torch_installed": (site / "torch").exists()}


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench/serving.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=os.environ.get("MLOPS_BASICS_BUNDLE", "artifacts/bundle"))
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5, help="rounds of --requests against ours, each followed by the "
                   "model-only ceiling (medians are reported)")
    p.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    p.add_argument("--client", default="lean", choices=["lean", "aiohttp"],
                   help="load generator: lean (one thread, epoll, prepared requests on keep-alive sockets) "
                        "or aiohttp (~0.4 ms); both run on the same cores as the server")
    p.add_argument("--image", help="an image tag whose size to report (podman)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VAL[,KEY=VAL]",
                   help="also run ours with these server settings, side by side (e.g. "
                        "fastapi_route:MLOPS_BASICS_SERVE_FAST_LANE=0); repeatable")
    p.add_argument("--no-size", action="store_true", help="skip the fresh-venv size of the serve extra")
    p.add_argument("--data-dir")
    a = p.parse_args(argv)
    from mlops_basics.predict import verify_bundle
    verify_bundle(a.bundle)
    try:
        from mlops_basics.bundle import validation_set
        sentences = validation_set(a.data_dir)[0]
    except Exception:
        sentences = ["The book was written by John.", "Who do you think that left?", "Mary thinks that John left."]
    res = {"benchmark": "serving", **machine(),
           "bundle_version": json.loads((Path(a.bundle) / "manifest.json").read_text())["version"],
           "load": {"requests": a.requests, "concurrency": a.concurrency, "endpoint": "GET /predict?text=", "client": a.client,
                    "sentences": len(sentences)}}
    variants = dict(v.split(":", 1) for v in a.variant)  # name -> "KEY=VAL,KEY=VAL" (server settings)
    ceilings = []  # ours only: (round's req/s, mean-batch ceiling, formed-mix ceiling), measured right after the round
    for kind in ("2021", "ours", *variants):
        port = free_port()
        env = dict(kv.split("=", 1) for kv in variants[kind].split(",")) if kind in variants else None
        proc = start("2021" if kind == "2021" else "ours", a.bundle, port, a.precision, env)
        try:
            rounds = []
            for _ in range(1 if kind == "2021" else a.rounds):  # ours is fast: several rounds, the median kept
                rounds.append(one_round(a.client, f"http://127.0.0.1:{port}", sentences, a.requests, a.concurrency, proc.pid))
                if kind == "ours":
                    formed = batches_formed(f"http://127.0.0.1:{port}")
                    mean = max(1, round(formed["mean_batch"]))
                    ceilings.append((rounds[-1]["req_per_s"], model_ceiling(a.bundle, a.precision, sentences, [mean]) | {"batch": mean},
                                     model_ceiling(a.bundle, a.precision, sentences, formed_sizes(formed))))
            out = sorted(rounds, key=lambda r: r["req_per_s"])[len(rounds) // 2]
            if kind != "2021":
                out["rounds_req_per_s"] = [r["req_per_s"] for r in rounds]
                out["batches"] = batches_formed(f"http://127.0.0.1:{port}")
            if kind in variants:
                res.setdefault("variants", {})[kind] = {"settings": env, **out}
            else:
                res[kind] = out
        finally:
            proc.terminate()
            proc.wait(30)
    o, b = res["ours"], res["2021"]
    res["ours"]["precision"], res["2021"]["precision"] = a.precision, "fp32 padded to 128"
    res["throughput_ratio"] = round(o["req_per_s"] / b["req_per_s"], 2)
    res["p99_ratio_2021_over_ours"] = round(b["p99_ms"] / o["p99_ms"], 2)
    frac = [r / c["sentences_per_s"] for r, c, _ in ceilings]
    mid = sorted(range(len(ceilings)), key=frac.__getitem__)[len(ceilings) // 2]  # the round with the median fraction
    res["model_only"] = ceilings[mid][1] | {"round": mid + 1, "rounds_sentences_per_s": [c["sentences_per_s"] for _, c, _ in ceilings]}
    res["http_fraction_of_model_only"] = round(frac[mid], 3)
    res["http_fraction_rounds"] = [round(f, 3) for f in frac]
    # a second view: the calls the server made, as batch sizes spread evenly within each histogram bucket
    res["model_only_formed_mix"] = ceilings[mid][2] | {"rounds_sentences_per_s": [f["sentences_per_s"] for _, _, f in ceilings]}
    res["http_fraction_of_formed_mix"] = round(statistics.median(r / f["sentences_per_s"] for r, _, f in ceilings), 3)
    res["target"] = {"throughput_ratio_min": 8, "p99": "equal or better", "errors": 0, "http_fraction_of_model_only_min": 0.7}
    res["meets_target"] = (res["throughput_ratio"] >= 8 and o["p99_ms"] <= b["p99_ms"] and o["errors"] == 0
                           and res["http_fraction_of_model_only"] >= 0.7)
    if not a.no_size:
        res["serve_extra_install"] = serve_extra_size()
    if a.image:
        r = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", a.image], capture_output=True, text=True)
        res["image_mb"] = round(int(r.stdout.strip()) / 1e6, 1) if r.returncode == 0 else r.stderr.strip()[-200:]
    return res


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-2021"]:
        import uvicorn
        uvicorn.run(app_2021(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[4]), log_level="warning", access_log=False)
    else:
        print(json.dumps(main(sys.argv[1:]), indent=1))
