"""Week 6: the workflows pass actionlint, the GitHub workflow schema, zizmor and the course's policy; the policy
flags each violation in bad workflows; every .ci/ script a workflow runs exists, and the ones that can run
offline run here (the deploy's build and smoke test with podman; the gate against a loopback HTTP server; the bundle's
`dvc pull` against a local remote)."""
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pytest
from conftest import BIN, ROOT, has_torch, job_venv, podman_env

WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
GOOD_DEPLOY = """\
name: deploy
on:
  push:
    branches: [main]
permissions:
  contents: read
jobs:
  test:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v5
      - run: bash .ci/test-all
  deploy:
    needs: test
    runs-on: ubuntu-24.04
    environment: production
    concurrency:
      group: deploy
      cancel-in-progress: false
    permissions:
      contents: read
      id-token: write
    steps:
      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8  # v5.0.0
      - run: bash .ci/deploy
"""


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)


def test_workflows_exist_and_cover_the_course():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "model-check.yml", "deploy.yml", "docs.yml"}


def test_actionlint_schema_and_zizmor_pass_on_every_workflow():
    r = run(BIN / "actionlint", "-no-color", *WORKFLOWS)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(BIN / "zizmor", "--offline", "--no-progress", "--config", ROOT / ".github/zizmor.yml", ROOT / ".github/workflows")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_policy_passes_on_ours_and_the_cli_says_so():
    r = run(BIN / "mlops-basics-ci", "check", ROOT / ".github/workflows")
    assert r.returncode == 0 and "no findings" in r.stdout, r.stdout + r.stderr


def findings(tmp_path, text: str) -> list[tuple[str, str]]:
    from mlops_basics.ci_policy import check_workflow
    p = tmp_path / "wf.yml"
    p.write_text(text)
    return [(f.job, f.rule) for f in check_workflow(p)]


def test_a_good_deploy_workflow_has_no_findings(tmp_path):
    assert findings(tmp_path, GOOD_DEPLOY) == []


@pytest.mark.parametrize("change, expected", [
    (("permissions:\n  contents: read\njobs:", "permissions: write-all\njobs:"), ("", "permissions")),
    (("permissions:\n  contents: read\njobs:", "jobs:"), ("", "permissions")),
    (("      id-token: write\n", "      id-token: write\n      contents: write\n"), ("deploy", "permissions")),
    (("      - run: bash .ci/test-all\n", "      - run: bash .ci/test-all\n    permissions:\n      id-token: write\n"), ("test", "permissions")),
    (("      - run: bash .ci/deploy\n", "      - run: bash .ci/deploy\n        env:\n          KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}\n"), ("deploy", "cloud-keys")),
    (("    needs: test\n", ""), ("deploy", "gated")),
    (("      - run: bash .ci/test-all\n", "      - run: pytest\n"), ("deploy", "gated")),
    (("      cancel-in-progress: false\n", "      cancel-in-progress: true\n"), ("deploy", "concurrency")),
    (("    concurrency:\n      group: deploy\n      cancel-in-progress: false\n", ""), ("deploy", "concurrency")),
    (("actions/checkout@v5", "actions/checkout@v4"), ("", "actions")),
    (("actions/checkout@v5", "actions/checkout@main"), ("", "actions")),
    (("  # v5.0.0", ""), ("", "actions")),
], ids=["top-write", "top-missing", "job-write", "idtoken-not-deploy", "aws-key", "no-needs", "needs-no-tests",
        "cancel", "no-concurrency", "old-major", "branch", "sha-no-version"])
def test_the_policy_flags_each_violation(tmp_path, change, expected):
    old, new = change
    assert old in GOOD_DEPLOY
    assert expected in findings(tmp_path, GOOD_DEPLOY.replace(old, new, 1))


def test_the_cli_exits_1_with_findings_and_2_with_one_line_on_bad_input(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(GOOD_DEPLOY.replace("    needs: test\n", ""))
    r = run(BIN / "mlops-basics-ci", "check", bad)
    assert r.returncode == 1 and "gated" in r.stdout and "Fix:" in r.stdout
    (tmp_path / "empty").mkdir()
    for arg in (tmp_path / "missing", tmp_path / "empty"):
        r = run(BIN / "mlops-basics-ci", "check", arg)
        assert r.returncode == 2 and r.stderr.startswith("mlops-basics-ci: error:") and len(r.stderr.splitlines()) == 1
    (tmp_path / "broken.yml").write_text("jobs: [unclosed")
    r = run(BIN / "mlops-basics-ci", "check", tmp_path / "broken.yml")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "YAML" in r.stderr


def test_every_script_a_workflow_runs_exists_and_parses():
    from mlops_basics.ci_policy import load_workflow
    from mlops_basics.cicd import job_scripts
    scripts = {s for p in WORKFLOWS for ss in job_scripts(load_workflow(p)).values() for s in ss}
    assert scripts >= {".ci/lint", ".ci/unit", ".ci/notebooks", ".ci/integration", ".ci/deploy", ".ci/ci-passed",
                       ".ci/docs", ".ci/model-check"}
    for s in scripts:
        assert (ROOT / s).is_file(), s
        assert run("bash", "-n", ROOT / s).returncode == 0, s
    test_all = (ROOT / ".ci/test-all").read_text()  # the README's test command runs the four test jobs
    for job in ("lint", "unit", "notebooks", "integration"):
        assert f"bash .ci/{job}" in test_all


MARKS_PLUGIN = """
def pytest_collection_finish(session):
    for item in session.items:
        print("MARKS", item.nodeid, ",".join(sorted({m.name for m in item.iter_markers()})))
"""


def test_integration_shards_run_every_test_exactly_once(tmp_path):
    "The four CI shards of .ci/integration partition the suite: each collected test falls in exactly one."
    import re
    shards = dict(re.findall(r'^\s*(\w+)\) m="([^"]+)"', (ROOT / ".ci/integration").read_text(), flags=re.M))
    assert set(shards) == {"fast", "dvc", "containers", "slow"}, shards
    (tmp_path / "marks_plugin.py").write_text(MARKS_PLUGIN)  # one collection, every test with its markers
    r = run(BIN / "python", "-m", "pytest", "tests", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "marks_plugin",
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    tests = [l[6:].rsplit(" ", 1) for l in r.stdout.splitlines() if l.startswith("MARKS ")]  # node ids may hold spaces
    assert len(tests) > 150, r.stdout[-2000:]

    def in_shard(expr: str, marks: set) -> bool:  # a pytest -m expression: marker names joined by and/or/not
        names = set(re.findall(r"\w+", expr)) - {"and", "or", "not"}
        return eval(expr, {"__builtins__": {}}, {n: n in marks for n in names})
    for nodeid, marks in tests:
        hits = [s for s, expr in shards.items() if in_shard(expr, set(marks.split(",")))]
        assert len(hits) == 1, f"{nodeid} runs in {hits or 'no shard'}"


class FakeGitHub(BaseHTTPRequestHandler):
    "GitHub's `GET /repos/{repo}/actions/workflows/{file}/runs`: one successful run for the SHA 'good…'."
    def do_GET(self):
        ok = self.headers.get("Authorization") == "Bearer t0ken" and "status=success" in self.path
        runs = [{"html_url": "https://github.example/run/1"}] if ok and "head_sha=aaaa" in self.path else []
        body = json.dumps({"total_count": len(runs), "workflow_runs": runs}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def github_api():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_the_deploy_gate_passes_only_a_commit_whose_ci_succeeded(github_api, tmp_path):
    env = {**os.environ, "GITHUB_API_URL": github_api, "GITHUB_REPOSITORY": "me/mlops-basics", "GH_TOKEN": "t0ken",
           "GITHUB_OUTPUT": str(tmp_path / "out"), "RUNNER_TEMP": str(tmp_path)}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    r = run("bash", ROOT / ".ci/ci-passed", "a" * 40, env=env)
    assert r.returncode == 0 and "github.example/run/1" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "out").read_text() == f"sha={'a' * 40}\n"
    r = run("bash", ROOT / ".ci/ci-passed", "b" * 40, env=env)
    assert r.returncode != 0 and "has not succeeded for commit bbbbbbbbbbbb" in r.stderr
    r = run(BIN / "mlops-basics-ci", "ci-passed", "a" * 40, env={**env, "GH_TOKEN": "", "GITHUB_TOKEN": ""})
    assert r.returncode == 2 and "GH_TOKEN" in r.stderr
    r = run(BIN / "mlops-basics-ci", "ci-passed", "not-a-sha", env=env)
    assert r.returncode == 2 and "not a commit SHA" in r.stderr


def test_describe_shows_each_workflows_job_graph():
    r = run(BIN / "mlops-basics-ci", "describe", ROOT / ".github/workflows")
    assert r.returncode == 0
    lines = dict(l.split(" ", 1) for l in r.stdout.splitlines())
    assert "lint | unit | notebooks | integration x4" in lines["ci.yml"]
    assert "gate -> deploy [production]" in lines["deploy.yml"]


@pytest.mark.containers
@pytest.mark.timeout(900)
def test_the_deploy_jobs_local_part_builds_and_smoke_tests_the_image(bundle, tmp_path):
    "`.ci/deploy` as CI runs it, on a fork with no AWS settings: build, run, /ready, one prediction, a notice."
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["MLOPS_BASICS_VENV"] = str(job_venv(tmp_path))  # the job's own venv: the extras .ci/deploy installs
    r = subprocess.run(["bash", str(ROOT / ".ci/deploy"), str(bundle)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    version = json.loads((bundle / "manifest.json").read_text())["version"]
    assert f"serves bundle {version}" in r.stdout
    assert "registry push and the Lambda deploy (weeks 7-8) are skipped" in r.stdout
    assert not has_torch(job_venv(tmp_path)), "the deploy job installed torch"
    remove_image(r.stdout)


def remove_image(deploy_output: str) -> None:
    "Remove the image a .ci/deploy run built (its tag is on the `--- build TAG with ENGINE` line)."
    tag = next(l.split()[2] for l in deploy_output.splitlines() if l.startswith("--- build "))
    env = podman_env()
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, env=env)
    subprocess.run(["podman", "image", "prune", "-f"], capture_output=True, env=env)  # the untagged build stages


@pytest.mark.dvc
def test_the_deploy_pulls_the_bundle_that_dvc_lock_records(tmp_path):
    "`.ci/pull-bundle` in a fresh clone: the files dvc.lock records, from a remote a scratch `dvc push` filled; an empty remote fails it."
    import yaml
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", MLOPS_BASICS_HOME=str(tmp_path / "home"))
    laptop, runner, remote = tmp_path / "laptop", tmp_path / "runner", tmp_path / "remote"
    (laptop / "artifacts/bundle").mkdir(parents=True)
    (laptop / "artifacts/bundle/manifest.json").write_text('{"version": "stand-in"}')
    (laptop / "artifacts/bundle/model.onnx").write_bytes(os.urandom(4096))
    for args in (["init", "--no-scm", "-q"], ["add", "-q", "artifacts/bundle"], ["remote", "add", "-d", "ci", remote], ["push", "-q"]):
        assert run(BIN / "dvc", *args, cwd=laptop, env=env).returncode == 0, args
    pushed = yaml.safe_load((laptop / "artifacts/bundle.dvc").read_text())["outs"][0]
    assert run("git", "clone", "-q", ROOT, runner).returncode == 0
    lock = yaml.safe_load((runner / "dvc.lock").read_text())  # a commit whose dvc.lock records the stand-in bundle
    lock["stages"]["export"]["outs"][0].update(md5=pushed["md5"], size=pushed["size"], nfiles=pushed["nfiles"])
    (runner / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    for url, ok in ((tmp_path / "empty", False), (remote, True)):
        assert run(BIN / "mlops-basics-dvc", "remotes", f"local.url={url}", cwd=runner, env=env).returncode == 0
        r = run("bash", ROOT / ".ci/pull-bundle", cwd=runner, env=env)
        assert (r.returncode == 0) == ok, r.stdout + r.stderr
    assert "artifacts/bundle from the DVC remote 'local'" in r.stdout
    for f in (laptop / "artifacts/bundle").iterdir():
        assert (runner / "artifacts/bundle" / f.name).read_bytes() == f.read_bytes(), f.name
    assert "bash .ci/pull-bundle" in (ROOT / ".ci/deploy").read_text()


@pytest.mark.dvc
@pytest.mark.slow
def test_the_model_check_runs_the_pipeline_and_reports_params_and_metrics(tmp_path):
    "A clone whose last commit changes a parameter: the report shows the smoke run and the change against HEAD~1."
    repo = tmp_path / "clone"
    assert run("git", "clone", "-q", ROOT, repo).returncode == 0
    p = repo / "params.yaml"
    p.write_text(p.read_text().replace("max_epochs: 5", "max_epochs: 4"))
    for cmd in (["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qam", "fewer epochs"],):
        assert run(*cmd, cwd=repo).returncode == 0
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([str(BIN / "python"), "-c", "import sys; from mlops_basics.cicd import model_check; "
                        "print(model_check('HEAD~1', sys.argv[1], sys.argv[2]))", str(tmp_path / "work"), str(repo)],
                       capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ran end to end in the smoke profile" in r.stdout and "fp32 MCC" in r.stdout
    assert "max_epochs" in r.stdout and "| 5 " in r.stdout and "| 4 " in r.stdout


@pytest.mark.containers
@pytest.mark.timeout(900)
def test_on_a_fork_without_the_model_remote_the_deploy_builds_a_stand_in_and_stays_green(tmp_path):
    "No bundle, no DVC remote, no AWS settings: a notice, a tiny stand-in bundle, and the image still builds and serves."
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["MLOPS_BASICS_HOME"] = str(tmp_path / "home")
    r = subprocess.run(["bash", str(ROOT / ".ci/deploy"), str(tmp_path / "no-bundle")], capture_output=True, text=True,
                       env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "building with a stand-in bundle of a tiny model" in r.stdout and "serves bundle" in r.stdout
    remove_image(r.stdout)
