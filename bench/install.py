"""Benchmark: each CI job's install, before and after the lock and per-job extras, side by side.

  before:  what every job installed until the lock: mlops-basics[dev] (torch and all), the newest versions
  after:   what each job installs now, from the lock (.ci/constraints.txt): lint -> [lint]; unit, notebooks,
           integration -> [dev]; deploy (with publish) -> [serve,lambda,aws,version]; monitor -> [serve,aws,monitor]

Each runs `.ci/setup-venv` into a new venv twice: with an empty installer cache (a cache miss, everything
downloaded) and then with the cache that run filled (what a CI job gets when its cache, keyed on the lock, hits).
The JSON has the wall times, the venv's size and whether torch is in it; the machine is recorded, and downloads
come from whatever index this machine uses, so compare the rows of one run only.

    python bench/install.py [--out bench-install.json] [--only NAME ...]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from machine import machine  # bench/machine.py: cores, CPU model and features

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # name -> (extras, lock)
    "before: every job, [dev] unlocked": ("dev", "none"),
    "after: lint": ("lint", ".ci/constraints.txt"),
    "after: unit, notebooks, integration": ("dev", ".ci/constraints.txt"),
    "after: deploy and publish": ("serve,lambda,aws,version", ".ci/constraints.txt"),
    "after: monitor": ("serve,aws,monitor", ".ci/constraints.txt"),
}


def size_mb(path: Path) -> float:
    "Disk use of a folder in MB (files hard-linked from the cache count once, as `du` counts them)."
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def install(extras: str, lock: str, cache: Path, work: Path) -> dict:
    "Time one `.ci/setup-venv` into a new venv under `work` with the installer cache `cache`."
    venv = work / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    env = {**os.environ, "MLOPS_BASICS_VENV": str(venv), "MLOPS_BASICS_EXTRAS": extras, "MLOPS_BASICS_LOCK": lock,
           "UV_CACHE_DIR": str(cache), "PIP_CACHE_DIR": str(cache / "pip")}
    if lock == "none" and "MLOPS_BASICS_TORCH" not in env:  # before the lock, setup-venv pinned torch alone
        torch = next(l for l in (ROOT / ".ci/constraints.txt").read_text().splitlines() if l.startswith("torch=="))
        env["MLOPS_BASICS_TORCH"] = torch + (f"+{env['MLOPS_BASICS_TORCH_BUILD']}" if env.get("MLOPS_BASICS_TORCH_BUILD") else "")
    t0 = time.perf_counter()
    r = subprocess.run(["bash", str(ROOT / ".ci/setup-venv")], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"install.py: error: setup-venv failed for [{extras}]:\n{r.stdout}{r.stderr}")
    torch = subprocess.run([str(venv / "bin/python"), "-c", "import importlib.util as u; print(bool(u.find_spec('torch')))"],
                           capture_output=True, text=True).stdout.strip() == "True"
    return {"seconds": round(seconds, 1), "venv_mb": size_mb(venv), "torch": torch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-install.json", help="the JSON file to write")
    ap.add_argument("--only", nargs="*", choices=list(CASES), help="run only these cases")
    a = ap.parse_args()
    rows = []
    for name in a.only or CASES:
        extras, lock = CASES[name]
        with tempfile.TemporaryDirectory(prefix="mlops-basics-bench-install.") as tmp:
            cache, work = Path(tmp) / "cache", Path(tmp) / "work"
            cold = install(extras, lock, cache, work)  # an empty cache: a miss
            warm = install(extras, lock, cache, work)  # the cache that run filled: a hit
        rows.append({"job": name, "extras": extras, "lock": lock, "cache_miss_s": cold["seconds"],
                     "cache_hit_s": warm["seconds"], "venv_mb": warm["venv_mb"], "torch": warm["torch"]})
        print(f"{name:40} [{extras}] miss {cold['seconds']:6.1f} s  hit {warm['seconds']:6.1f} s  "
              f"{warm['venv_mb']:6.0f} MB  torch {warm['torch']}", flush=True)
    Path(a.out).write_text(json.dumps({"machine": machine(), "benchmark": "install", "rows": rows}, indent=2) + "\n")
    print(f"install.py: {a.out}")


if __name__ == "__main__":
    main()
