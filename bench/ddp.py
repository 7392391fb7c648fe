"""Benchmark: one epoch of the real recipe (MiniLM on CoLA) in one process vs two DDP processes, side by side.

  single: trainer=single: one process, torch's threads on every core
  ddp:    trainer=ddp: two processes (gloo), one torch thread each, every sentence once per epoch between them

Same data, same per-process batch (so DDP's effective batch is twice as large and it takes half the steps),
one epoch, one validation at its end. Prints JSON: each run's wall time, training time (from its metrics.json),
steps, validation MCC, and the ratio. On a machine whose cores the two processes share, DDP is not expected to
be faster; it pays when each process has hardware of its own.

    python bench/ddp.py [--fraction 1.0] [--data-dir ../shared/data/cola]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from machine import machine  # bench/machine.py: cores, CPU model and features

def run(kind: str, out: Path, fraction: float, data_dir: str | None) -> dict:
    "One epoch with trainer=kind; its times and metrics."
    args = [str(Path(sys.executable).parent / "mlops-basics-train"), "model=minilm", "training=full", f"trainer={kind}",
            "training.max_epochs=1", "training.val_check_interval=1.0", f"training.limit_train_batches={fraction}",
            "training.progress_bar=false", "logger=csv", f"hydra.run.dir={out}"]
    args += [f"data.dir={data_dir}"] if data_dir else []
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"bench/ddp.py: error: trainer={kind} failed: {r.stderr.strip()[-600:]}")
    m = json.loads((out / "metrics.json").read_text())
    hist = json.loads((out / "history.json").read_text())["history"]
    return {"wall_s": round(wall, 1), "train_s": m["train_seconds"], "steps": hist[-1]["step"],
            "val_mcc": m["metrics"]["val/mcc"], "val_acc": m["metrics"]["val/acc"]}


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench/ddp.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--fraction", type=float, default=1.0, help="share of the epoch's batches (1.0: the whole epoch)")
    p.add_argument("--data-dir", default=os.environ.get("MLOPS_BASICS_DATA_DIR"))
    a = p.parse_args(argv)
    res = {"benchmark": "ddp", **machine(), "fraction_of_epoch": a.fraction,
           "model": "minilm", "per_process_batch": 32}
    with tempfile.TemporaryDirectory() as d:
        for kind in ("single", "ddp"):
            res[kind] = run(kind, Path(d) / kind, a.fraction, a.data_dir)
    res["ddp_time_over_single"] = round(res["ddp"]["train_s"] / res["single"]["train_s"], 2)
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
