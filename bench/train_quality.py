"""Benchmark: train the `full` profile with the offline MiniLM backbone and report CoLA validation quality.

Prints one JSON object: validation accuracy and MCC of the best epoch, training seconds, the
majority-class baseline, and the per-epoch curve. Target (issue 2): MCC >= 0.30 in <= 10 minutes of
training on 2 CPU cores. Usage:

    python bench/train_quality.py [HYDRA_OVERRIDE ...]       # e.g. training.max_epochs=3
"""
import json
import os
import platform
import sys
import tempfile
import time

from mlops_basics.core import MlopsBasicsError, fail
from mlops_basics.train import compose_config, train
from mlops_basics.tracking import read_history


def main(argv: list[str]) -> dict:
    "Train once with `training=full` (plus overrides) and summarise quality and cost."
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    overrides = ["model=minilm", "training=full", "logger=csv", "training.progress_bar=false", *argv]
    cfg = compose_config(overrides)
    with tempfile.TemporaryDirectory(prefix="mlops-basics-bench-") as out:
        t0 = time.perf_counter()
        s = train(cfg, out)
        wall = time.perf_counter() - t0
        curve = [{k: h.get(k) for k in ("epoch", "val/mcc", "val/acc", "train/loss")} for h in read_history(out)["history"]]
    m = s["metrics"]
    return {
        "benchmark": "train_quality", "overrides": overrides,
        "val_acc": round(m["val/acc"], 4), "val_mcc": round(m["val/mcc"], 4), "best_epoch": s["best_epoch"],
        "majority_class_acc": s["majority_acc"], "majority_class_mcc": 0.0,
        "train_seconds": s["train_seconds"], "wall_seconds_incl_loading": round(wall, 1),
        "target": {"mcc": 0.30, "train_seconds": 600},
        "meets_target": m["val/mcc"] >= 0.30 and s["train_seconds"] <= 600,
        "curve": curve, "cpus": os.cpu_count(), "python": platform.python_version(),
    }


if __name__ == "__main__":
    try:
        print(json.dumps(main(sys.argv[1:]), indent=1))
    except MlopsBasicsError as e:
        fail("train_quality", e)
