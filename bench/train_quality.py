"""Benchmark: train the `full` profile with the offline MiniLM backbone and report CoLA validation quality.

Prints one JSON object: validation accuracy and MCC of the best checkpoint, training seconds, the
majority-class baseline and the per-validation curve. Target: MCC >= 0.30 in <= 10 minutes
of training on 2 CPU cores.

With --baseline it first trains, in the same run, the plain recipe of the 2021 course (same backbone:
[CLS] pooling, one learning rate of 5e-5, 3 epochs, random batches, every weight trained, validation
once per epoch) and reports both side by side. (BERT-Tiny, the 2021 course's model, needs the hub;
its published CoLA MCC is 0.0.)

    python bench/train_quality.py [--baseline] [HYDRA_OVERRIDE ...]     # e.g. training.max_epochs=3
"""
import json
import os
import sys
import tempfile
import time
from machine import machine  # bench/machine.py: cores, CPU model and features
from mlops_basics.config import compose_config
from mlops_basics.core import MlopsBasicsError, fail
from mlops_basics.tracking import read_history
from mlops_basics.train import train

COMMON = ["model=minilm", "training=full", "logger=csv", "training.progress_bar=false"]
PLAIN = ["model.pooling=cls", "training.lr=5e-5", "training.head_lr=5e-5", "training.max_epochs=3",
         "training.freeze_embeddings=false", "training.val_check_interval=1.0", "data.length_grouping=false"]


def run(overrides: list[str]) -> dict:
    "Train once with `overrides` and summarise quality and cost."
    cfg = compose_config(overrides)
    with tempfile.TemporaryDirectory(prefix="mlops-basics-bench-") as out:
        t0 = time.perf_counter()
        s = train(cfg, out)
        wall = time.perf_counter() - t0
        curve = [{k: h.get(k) for k in ("epoch", "val/mcc", "val/acc", "train/loss")} for h in read_history(out)["history"]]
    m = s["metrics"]
    return {"overrides": overrides, "val_acc": round(m["val/acc"], 4), "val_mcc": round(m["val/mcc"], 4),
            "best_epoch": s["best_epoch"], "train_seconds": s["train_seconds"], "wall_seconds_incl_loading": round(wall, 1),
            "majority_class_acc": s["majority_acc"], "majority_class_mcc": 0.0, "curve": curve}


def main(argv: list[str]) -> dict:
    "The full recipe (and optionally the plain baseline first), as one JSON-ready dict."
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    baseline = "--baseline" in argv
    extra = [a for a in argv if a != "--baseline"]
    res = {"benchmark": "train_quality", **machine(),
           "target": {"mcc": 0.30, "train_seconds": 600}}
    if baseline:
        res["plain"] = run(COMMON + PLAIN + extra)
    res["ours"] = ours = run(COMMON + extra)
    res["meets_target"] = ours["val_mcc"] >= 0.30 and ours["train_seconds"] <= 600
    if baseline:
        p = res["plain"]
        res["comparison"] = {"mcc_gain": round(ours["val_mcc"] - p["val_mcc"], 4),
                             "seconds_per_epoch": {"plain": round(p["train_seconds"] / 3, 1),
                                                   "ours": round(ours["train_seconds"] / max(1, int(ours["curve"][-1]["epoch"])), 1)}}
    return res


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(print(__doc__.strip()))
    try:
        print(json.dumps(main(sys.argv[1:]), indent=1))
    except MlopsBasicsError as e:
        fail("train_quality", e)
