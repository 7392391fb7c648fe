"""Shared fixtures: a small synthetic CoLA folder, the real one when present, and a CLI runner."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path
import pytest
from mlops_basics.ports import NotReady, free_port, http_answer, wait_until  # noqa: F401 (free_port: for the tests)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


MARKERS = {  # run a fast subset with, e.g., pytest -m "not containers and not dvc and not slow"
    "containers": "builds and runs images with podman (installed when missing): minutes",
    "dvc": "real git + DVC repositories, pipelines and remotes: minutes",
    "browser": "renders pages in headless Chromium (installed by .ci/setup-chromium when missing)",
    "slow": "fine-tunes the real MiniLM backbone or runs notebooks: a minute or more",
}


def pytest_configure(config):
    for name, what in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what}")


def wait_ready(url: str, timeout: float = 60, proc: subprocess.Popen | None = None, log: Path | None = None) -> dict:
    "Poll `url`/ready until it answers 200 (its JSON); fail early, with the log, if `proc` exits."
    try:
        return json.loads(wait_until(lambda: http_answer(url + "/ready"), url, timeout, alive=proc and (lambda: proc.poll() is None)))
    except NotReady as e:
        raise AssertionError(f"{e}: " + (log.read_text()[-3000:] if log else "")) from None


def job_venv(tmp_path: Path) -> Path:
    "A folder for a CI job's own venv (MLOPS_BASICS_VENV: the job's script installs there only its extras), beside tmp_path."
    return tmp_path.parent / f"{tmp_path.name}-job-venv"


def has_torch(venv: Path) -> bool:
    "Whether torch is installed in `venv`."
    return any(venv.glob("lib/python*/site-packages/torch"))


def real_cola_dir() -> Path | None:
    "The real CoLA folder: $MLOPS_BASICS_DATA_DIR, else ../shared/data/cola beside the repository."
    for d in (os.environ.get("MLOPS_BASICS_DATA_DIR"), ROOT.parent / "shared" / "data" / "cola"):
        if d and (Path(d) / "train.tsv").is_file():
            return Path(d)
    return None


def write_cola(folder: Path, n_train: int = 96, n_val: int = 40, seed: int = 0) -> Path:
    "A small GLUE-format CoLA folder: acceptable sentences and scrambled (unacceptable) ones."
    rng = random.Random(seed)
    subjects, verbs, objects = ["The cat", "A dog", "My friend", "The teacher"], ["saw", "liked", "found", "took"], ["the ball.", "a book.", "the car."]
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("validation.tsv", n_val)):
        lines = []
        for _ in range(n):
            words = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}".split()
            ok = rng.random() < 0.7
            if not ok:
                rng.shuffle(words)
            lines.append(f"syn\t{int(ok)}\t{'' if ok else '*'}\t{' '.join(words)}")
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def cola_dir(tmp_path) -> Path:
    return write_cola(tmp_path / "cola")


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


def run_cli(prog: str, *args: str, home: Path, timeout: int = 300, **env) -> subprocess.CompletedProcess:
    "Run one of the package's console scripts in a fresh process, offline, writing under `home`."
    e = {**os.environ, "MLOPS_BASICS_HOME": str(home), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([str(BIN / prog), *args], capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    "A tiny_random smoke checkpoint trained on a synthetic CoLA folder (seconds)."
    from mlops_basics.config import compose_config
    from mlops_basics.train import train
    tmp = tmp_path_factory.mktemp("trained")
    data = write_cola(tmp / "cola", n_train=64, n_val=48)
    cfg = compose_config(["model=tiny_random", "training=smoke", "logger=csv", f"data.dir={data}", f"paths.home={tmp / 'home'}"])
    s = train(cfg, tmp / "run")
    return {"checkpoint": s["checkpoint"], "data": data, "tmp": tmp}


@pytest.fixture(scope="session")
def bundle(trained) -> Path:
    "A model bundle exported from the `trained` checkpoint."
    from mlops_basics.bundle import export_bundle
    out = trained["tmp"] / "bundle"
    export_bundle(trained["checkpoint"], out, data_dir=trained["data"])
    return out


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory) -> Path:
    "A bundle of the real MiniLM backbone after a smoke fine-tune on real CoLA (real activation ranges; ~1 minute)."
    from mlops_basics.bundle import export_bundle
    from mlops_basics.config import compose_config
    from mlops_basics.train import train
    data = real_cola_dir()
    if data is None:
        pytest.skip("needs the CoLA folder (MLOPS_BASICS_DATA_DIR or ../shared/data/cola)")
    tmp = tmp_path_factory.mktemp("minilm")
    cfg = compose_config(["model=minilm", "training=smoke", "logger=csv", f"data.dir={data}", f"paths.home={tmp / 'home'}"])
    ckpt = train(cfg, tmp / "run")["checkpoint"]
    export_bundle(ckpt, tmp / "bundle", data_dir=data)
    return tmp / "bundle"


@pytest.fixture(scope="session")
def chromium_ready() -> str:
    "A headless Chromium for the browser tests (.ci/setup-chromium installs it when missing)."
    r = subprocess.run(["bash", str(ROOT / ".ci/setup-chromium")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    from mlops_basics.core import find_chromium
    exe = find_chromium()
    assert exe, "setup-chromium succeeded but no chromium is on PATH"
    return exe


def podman_env(registry: bool = False) -> dict:
    "This process's environment plus what podman needs on this host (docker/setup-podman installs it when missing; docker/setup-registry the registry)."
    r = subprocess.run(["bash", str(ROOT / "docker/setup-podman")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    if registry:
        reg = subprocess.run(["bash", str(ROOT / "docker/setup-registry")], capture_output=True, text=True, timeout=600)
        assert reg.returncode == 0, reg.stderr[-3000:]
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in r.stdout.split()[1:])  # "export CONTAINERS_CONF=... BASE_IMAGE=..."
    return env


GITHUB_REPO = "learner/mlops-basics"  # the repository the AWS tests provision a deploy role for


@pytest.fixture(scope="module")
def aws():
    "A moto server process on loopback standing in for AWS, one per test module (weeks 7-9)."
    from mlops_basics.aws import local_aws
    with local_aws(region="eu-west-1") as url:
        yield url


def aws_cfg(*overrides):
    "The composed aws config for the test repository, with Hydra overrides."
    from mlops_basics.aws import aws_config
    return aws_config([f"github.repository={GITHUB_REPO}", *overrides])
