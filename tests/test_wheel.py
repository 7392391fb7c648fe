"""The library as a user gets it: the wheel built from the repository, installed with its serving, Lambda, AWS and
monitoring extras into a fresh venv (no torch, no dev tools, no repository files), and every command tried there:
its --help, and one real path each (or, where the extra is not installed, one line saying what to install)."""
import json
import os
import subprocess
import sys
import urllib.request
import pytest
from test_packaging import build_wheel
from conftest import BIN, ROOT, free_port, wait_ready, write_cola
from mlops_basics.ports import http_answer, wait_until

EXTRAS = "serve,lambda,aws,monitor"
COMMANDS = ("train", "course", "dvc", "bundle", "serve", "ci", "registry", "lambda", "monitor")


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> dict:
    "A fresh venv (python -m venv, pip's own settings) with the wheel and its extras at the locked versions; its bin and env."
    tmp = tmp_path_factory.mktemp("wheel")
    whl = build_wheel(tmp).filename
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    r = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--constraint", str(ROOT / ".ci/constraints.txt"),
                        f"{whl}[{EXTRAS}]"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_BASICS_AWS", "AWS_", "VIRTUAL_ENV"))}
    env |= {"PATH": f"{venv / 'bin'}:{env['PATH']}", "MLOPS_BASICS_HOME": str(tmp / "home"), "PYTHONWARNINGS": "ignore"}
    return {"bin": venv / "bin", "env": env, "tmp": tmp}


def run(w: dict, cmd: str, *args, cwd=None, timeout: int = 300, **env) -> subprocess.CompletedProcess:
    "One of the wheel's commands, in a fresh process, run from a folder outside the repository."
    return subprocess.run([str(w["bin"] / f"mlops-basics-{cmd}"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or w["tmp"], timeout=timeout, env={**w["env"], **env})


def test_the_wheel_venv_has_no_torch_and_no_repository(wheel_venv):
    py = str(wheel_venv["bin"] / "python")
    r = subprocess.run([py, "-c", "import importlib.util as u, mlops_basics as m; print(m.__file__, [n for n in "
                        "('torch', 'lightning', 'transformers', 'papermill') if u.find_spec(n)])"], capture_output=True, text=True,
                       cwd=wheel_venv["tmp"])
    assert "site-packages/mlops_basics/__init__.py []" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_answers_help(wheel_venv, cmd):
    r = run(wheel_venv, cmd, "--help")
    assert r.returncode == 0 and "usage" in r.stdout.lower() and "Traceback" not in r.stderr, r.stdout[-500:] + r.stderr[-2000:]


@pytest.mark.parametrize("cmd, args, extra", [
    ("train", ["model=tiny_random", "training=smoke"], "train"),  # torch and Lightning: not in these extras
    ("course", ["--nbs", ROOT / "nbs", "lib/ports"], "dev"),      # papermill runs the notebooks: the dev extra
])
def test_a_command_whose_extra_is_missing_says_what_to_install(wheel_venv, cmd, args, extra):
    r = run(wheel_venv, cmd, *args)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"pip install 'mlops-basics[{extra}]'" in r.stderr.strip().splitlines()[-1], r.stderr[-500:]


def test_bundle_serve_and_monitor_from_the_wheel(wheel_venv, bundle):
    "Predict in-process; serve over HTTP (its log is the prediction events); ingest that log and summarize it."
    w = wheel_venv
    r = run(w, "bundle", "predict", "--bundle", bundle, "The cat sat on the mat.")
    assert r.returncode == 0 and "The cat sat on the mat." in r.stdout and r.stdout.split()[0] in ("acceptable", "unacceptable"), r.stderr
    port, log = free_port(), w["tmp"] / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(w["bin"] / "mlops-basics-serve"), "--bundle", str(bundle), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=w["env"], cwd=w["tmp"])
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_ready(url, 60, proc, log)["status"] == "ready"
        req = urllib.request.Request(url + "/predict", json.dumps({"sentences": ["The cat sat.", "Sat cat the."]}).encode(),
                                     {"content-type": "application/json"})
        assert len(json.load(urllib.request.urlopen(req, timeout=30))["predictions"]) == 2
    finally:
        proc.terminate(); proc.wait(30)
    store = w["tmp"] / "store.duckdb"
    r = run(w, "monitor", "--store", store, "ingest", log)
    assert r.returncode == 0 and "2 predictions and 0 errors added" in r.stdout, r.stdout + r.stderr[-1000:]
    r = run(w, "monitor", "--store", store, "summary")
    assert r.returncode == 0 and "service" in r.stdout, r.stdout + r.stderr[-1000:]


def test_the_lambda_emulator_from_the_wheel(wheel_venv, bundle):
    "mlops-basics-lambda local: the emulator fetched into the home folder (no repository script), one invocation answered."
    w = wheel_venv
    proc = subprocess.Popen([str(w["bin"] / "mlops-basics-lambda"), "local", "--bundle", str(bundle)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=w["env"], cwd=w["tmp"])
    try:
        line = proc.stdout.readline()  # "the function is at URL (Ctrl-C stops it)", once it listens
        assert line.startswith("the function is at "), line + proc.stderr.read() if proc.poll() is not None else line
        req = urllib.request.Request(line.split()[4], json.dumps({"sentences": ["The book was read."]}).encode())
        got = json.load(urllib.request.urlopen(req, timeout=60))
        assert len(got["predictions"]) == 1 and got["model_version"], got
    finally:
        proc.terminate(); proc.wait(30)


def test_registry_provisions_and_dvc_fetches_data_from_the_wheel(wheel_venv, tmp_path):
    "mlops-basics-registry against a moto server (the dev venv's: the stand-in is not part of the library); dvc fetch-data; ci check."
    w = wheel_venv
    port = free_port()
    moto = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "MLOPS_BASICS_AWS_ENDPOINT": f"http://127.0.0.1:{port}"}
        wait_until(lambda: http_answer(f"http://127.0.0.1:{port}/moto-api/"), "moto", 60, alive=lambda: moto.poll() is None)
        first = run(w, "registry", "provision", "github.repository=learner/mlops-basics", **aws)
        again = run(w, "registry", "provision", "github.repository=learner/mlops-basics", **aws)
    finally:
        moto.terminate(); moto.wait(10)
    assert first.returncode == 0 and "done: s3://" in first.stdout, first.stdout + first.stderr[-1000:]
    assert again.returncode == 0 and "up to date: nothing to change" in again.stdout, again.stdout + again.stderr[-1000:]
    r = run(w, "dvc", "fetch-data", tmp_path / "data", "--data-dir", write_cola(tmp_path / "cola"))
    assert r.returncode == 0 and "96 train, 40 validation" in r.stdout, r.stdout + r.stderr[-1000:]
    r = run(w, "ci", "check", cwd=ROOT)  # the policy on the repository's workflows
    assert r.returncode == 0 and "no findings" in r.stdout, r.stdout + r.stderr[-1000:]
