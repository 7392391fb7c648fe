"""docker/: the API image built and run with podman (installed by docker/setup-podman if missing),
called through its published port; compose up/down through podman's Docker-compatible socket;
the Dockerfile linted with hadolint."""
import json
import os
import subprocess
import time
import httpx
import pytest
from conftest import BIN, ROOT, free_port, podman_env, wait_ready

pytestmark = [pytest.mark.timeout(900), pytest.mark.containers]


@pytest.fixture(scope="module")
def engine() -> dict:
    "Environment for podman on this host (installs podman and the local base image when missing)."
    return podman_env()


def podman(*args, env, check=True, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run(["podman", *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
    if check:
        assert r.returncode == 0, f"podman {args}: {r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def image(engine, bundle) -> str:
    tag = f"localhost/mlops-basics-api:test-{os.getpid()}"
    r = subprocess.run(["bash", str(ROOT / "docker/build-image"), str(bundle), tag], capture_output=True, text=True,
                       env={**engine, "PYTHON": str(BIN / "python")}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    yield tag
    podman("rmi", "-f", tag, env=engine, check=False)
    podman("image", "prune", "-f", env=engine, check=False)  # the untagged build stages


def test_dockerfile_passes_hadolint():
    r = subprocess.run([str(BIN / "hadolint"), "--failure-threshold", "warning", str(ROOT / "docker/Dockerfile")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_image_is_small_torch_free_non_root_without_secrets(image, engine, bundle):
    info = json.loads(podman("image", "inspect", image, env=engine).stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == "10001" and "8000/tcp" in cfg["ExposedPorts"]
    assert "/ready" in " ".join(info["Healthcheck"]["Test"])  # kept by --format docker
    env = "\n".join(cfg["Env"])
    for secret in ("AWS_", "WANDB_API_KEY", "TOKEN", "PASSWORD", "SECRET"):
        assert secret not in env
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image, env=engine).stdout
    assert "SECRET" not in history and "AWS_" not in history
    r = podman("run", "--rm", "--entrypoint", "python3", image, "-c",
               "import importlib.util as u, os; print([m for m in ('torch', 'lightning', 'transformers', 'datasets') "
               "if u.find_spec(m)], os.getuid())", env=engine)
    assert r.stdout.strip() == "[] 10001"
    assert info["Size"] < 700e6, info["Size"]


def test_container_serves_predictions_on_its_published_port(image, engine, bundle):
    port = free_port()
    cid = podman("run", "-d", "--rm", "--read-only", "-p", f"127.0.0.1:{port}:8000", image, env=engine).stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        ready = wait_ready(url)
        assert ready["model_version"] == json.loads((bundle / "manifest.json").read_text())["version"]
        r = httpx.post(url + "/predict", json={"sentences": ["The cat saw the ball.", "ball cat the."]})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2
        assert httpx.post(url + "/predict", json={"sentences": []}).status_code == 422
        time.sleep(0.3)
        logs = podman("logs", cid, env=engine).stdout
        assert '"event": "prediction"' in logs and "The cat saw" not in logs
        from mlops_basics.container_logs import ingest_container  # lib/container_logs: the container's log, read in place
        from mlops_basics.monitoring import open_store
        con = open_store(":memory:")
        got = ingest_container(con, cid, env=engine)
        assert (got["added"], got["errors"], got["bad"]) == (2, 1, 0), got
        assert httpx.post(url + "/predict", json={"sentences": ["A dog found a book."]}).status_code == 200
        time.sleep(0.3)
        again = ingest_container(con, cid, env=engine)  # --since the last line's time: only the new request
        assert (again["added"], again["errors"]) == (1, 0) and ingest_container(con, cid, env=engine)["added"] == 0
        assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == 3
    finally:
        podman("stop", "-t", "10", cid, env=engine, check=False)


def test_compose_up_and_down(image, engine, tmp_path):
    sock = tmp_path / "podman.sock"
    svc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=engine,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    env = {**engine, "DOCKER_HOST": f"unix://{sock}", "COMPOSE_BAKE": "false", "DOCKER_BUILDKIT": "0",
           "MLOPS_BASICS_IMAGE": image, "MLOPS_BASICS_API_PORT": str(port)}
    compose = [str(BIN / "docker-compose"), "-f", str(ROOT / "docker/compose.yaml"), "-p", f"mbtest{os.getpid()}"]
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True, env=env, timeout=300)
        assert up.returncode == 0, up.stderr[-2000:]
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        assert httpx.get(url + "/predict", params={"text": "A dog found a book."}).status_code == 200
        ps = subprocess.run([*compose, "ps", "--format", "json"], capture_output=True, text=True, env=env, timeout=60)
        assert "running" in ps.stdout.lower()
    finally:
        down = subprocess.run([*compose, "down"], capture_output=True, text=True, env=env, timeout=300)
        svc.terminate()
        svc.wait(10)
    assert down.returncode == 0, down.stderr[-2000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
