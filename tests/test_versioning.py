"""DVC for real: a fresh clone of this repository runs `dvc repro` offline (smoke parameters), then
round trips its data and model through a local remote and through S3 served by a moto server process."""
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
import pytest
import yaml
from conftest import BIN, ROOT, free_port, run_cli, write_cola

pytestmark = [pytest.mark.timeout(900), pytest.mark.dvc]


def sh(*args, cwd, check=True, **env) -> subprocess.CompletedProcess:
    "A command in a fresh process with this environment's bin/ first on PATH (as DVC's stages need)."
    e = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", **env}
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=e, capture_output=True, text=True, timeout=900)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout[-1500:]} {r.stderr[-1500:]}"
    return r


def git_commit(repo: Path, msg: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", msg, cwd=repo)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> dict:
    "A fresh clone of HEAD with smoke parameters, reproduced with `dvc repro` (no network)."
    tmp = tmp_path_factory.mktemp("dvc")
    repo, home = tmp / "clone", tmp / "home"
    sh("git", "clone", "-q", ROOT, repo, cwd=tmp)
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["train"].update(model="tiny_random", training="smoke", max_epochs=1, logger="csv")
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    data = write_cola(tmp / "cola", n_train=64, n_val=40)
    env = {"MLOPS_BASICS_HOME": str(home), "MLOPS_BASICS_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    r = sh(BIN / "mlops-basics-dvc", "remotes", f"local.url={tmp / 'remote'}", cwd=repo, **env)
    assert f"local={tmp / 'remote'}" in r.stdout
    t0 = time.perf_counter()
    log = sh(BIN / "dvc", "repro", cwd=repo, **env).stdout
    return {"repo": repo, "tmp": tmp, "env": env, "log": log, "secs": time.perf_counter() - t0, "data": data}


def lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def test_repro_runs_every_stage_and_writes_bundle_and_metrics(clone):
    repo = clone["repo"]
    for stage in ("data", "train", "export", "evaluate", "reference"):
        assert f"Running stage '{stage}'" in clone["log"]
    assert (repo / "data/cola/train.tsv").read_text() == (clone["data"] / "train.tsv").read_text()
    assert (repo / "artifacts/train/checkpoints/best.ckpt").is_file()
    m = json.loads((repo / "artifacts/bundle/manifest.json").read_text())
    assert m["config"]["model"]["name"] == "tiny_random" and m["config"]["seed"] == 42
    ref = json.loads((repo / "artifacts/reference.json").read_text())  # week 9's drift reference, versioned with the bundle
    assert ref["model_version"] == m["version"] and ref["events"] == 40 == sum(ref["labels"].values()) == len(ref["score"])
    ev = json.loads((repo / "artifacts/eval/metrics.json").read_text())
    assert ev["version"] == m["version"] and ev["n"] == 40 and {"acc", "mcc"} <= set(ev["int8"])
    st = lock(repo)
    assert st["train"]["params"]["params.yaml"]["train"]["model"] == "tiny_random"
    assert st["train"]["params"]["mlops_basics/conf/training/smoke.yaml"]["limit_train_batches"] == 8
    assert "nothing to reproduce" in sh(BIN / "dvc", "status", cwd=repo, **clone["env"]).stdout.lower() or \
        "up to date" in sh(BIN / "dvc", "status", cwd=repo, **clone["env"]).stdout.lower()


def test_metrics_and_plots_show(clone):
    repo, env = clone["repo"], clone["env"]
    out = sh(BIN / "dvc", "metrics", "show", "--json", cwd=repo, **env).stdout
    metrics = json.loads(out)[""]["data"]
    assert "artifacts/eval/metrics.json" in metrics and "artifacts/train/metrics.json" in metrics
    assert "mcc" in metrics["artifacts/eval/metrics.json"]["data"]["int8"]
    sh(BIN / "dvc", "plots", "show", "-o", clone["tmp"] / "plots", cwd=repo, **env)
    html = (clone["tmp"] / "plots" / "index.html").read_text()
    assert "validation MCC during training" in html and "confusion matrix" in html


def test_changed_hydra_parameter_reruns_train_but_not_data(clone, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(clone["repo"], work, symlinks=True)
    f = work / "mlops_basics/conf/training/smoke.yaml"
    f.write_text(f.read_text().replace("lr: 1.0e-4", "lr: 3.0e-4", 1))
    diff = sh(BIN / "dvc", "params", "diff", cwd=work, **clone["env"]).stdout
    assert "mlops_basics/conf/training/smoke.yaml" in diff and "lr" in diff
    log = sh(BIN / "dvc", "repro", cwd=work, **clone["env"]).stdout
    assert "Running stage 'train'" in log and "Running stage 'data'" not in log


@pytest.fixture
def moto_server():
    "moto's S3 server as a real separate process on loopback."
    port = free_port()
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("remote", ["local", "s3"])
def test_push_delete_pull_gives_identical_files(clone, tmp_path, remote, request, monkeypatch):
    from mlops_basics.dvc_roundtrip import roundtrip, tracked_hashes
    work = tmp_path / "w"
    shutil.copytree(clone["repo"], work, symlinks=True)
    env = clone["env"]
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    if remote == "s3":
        endpoint = request.getfixturevalue("moto_server")
        import boto3
        boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in creds.items() if k != "AWS_DEFAULT_REGION"},
                     region_name="us-east-1").create_bucket(Bucket="course-test-bucket")
        sh(BIN / "mlops-basics-dvc", "remotes", f"local.url={clone['tmp'] / 'remote'}", "s3.bucket=course-test-bucket",
           f"s3.endpoint_url={endpoint}", cwd=work, **env)
        for k, v in creds.items():  # roundtrip() runs dvc in child processes that inherit these
            monkeypatch.setenv(k, v)
    before = tracked_hashes(work)
    assert any(k.startswith("artifacts/bundle/") for k in before) and "data/cola/train.tsv" in before
    res = roundtrip(work, remote)
    assert res["identical"] and res["files"] == len(before)
    assert tracked_hashes(work) == before
    if remote == "s3":
        import boto3
        keys = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").list_objects_v2(Bucket="course-test-bucket")
        assert keys["KeyCount"] >= 3 and all(o["Key"].startswith("dvc/") for o in keys["Contents"])


def test_switching_between_two_model_versions(clone, tmp_path, monkeypatch):
    from mlops_basics.versioning import bundle_version, checkout
    work = tmp_path / "w"
    shutil.copytree(clone["repo"], work, symlinks=True)
    env = clone["env"]
    git_commit(work, "v1")
    v1 = bundle_version(work)
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["train"]["seed"] = 7
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    sh(BIN / "dvc", "repro", cwd=work, **env)
    git_commit(work, "v2")
    v2 = bundle_version(work)
    assert v1 != v2
    branch = sh("git", "branch", "--show-current", cwd=work).stdout.strip()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert checkout(work, "HEAD~1") == v1
    assert json.loads((work / "artifacts/eval/metrics.json").read_text())["version"] == v1
    assert checkout(work, branch) == v2


def test_fetch_data_refuses_bad_data_and_leaves_nothing(tmp_path, home):
    bad = write_cola(tmp_path / "bad")
    (bad / "validation.tsv").write_text("src\t1\t\tfine sentence\nsrc\t7\t\tbad label\n")
    r = run_cli("mlops-basics-dvc", "fetch-data", str(tmp_path / "out"), "--data-dir", str(bad), home=home)
    assert r.returncode == 2 and "validation.tsv:2: label must be 0 or 1" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    r = run_cli("mlops-basics-dvc", "remotes", "s3.bucket=ab", "--repo", str(ROOT), home=home)
    assert r.returncode == 2 and "3 or more characters" in r.stderr
    r = run_cli("mlops-basics-dvc", "remotes", "--repo", str(tmp_path), home=home)
    assert r.returncode == 2 and "is not a DVC repository" in r.stderr
    r = run_cli("mlops-basics-dvc", "--help", home=home)
    assert r.returncode == 0 and "fetch-data" in r.stdout and "s3.bucket" in r.stdout
