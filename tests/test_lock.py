"""The lock (.ci/constraints.txt): versions only, every requirement covered, the suite's own environment installed from
it, and each CI job's install limited to the extras its path needs."""
import configparser
import os
import re
import subprocess
import sys
import pytest
from conftest import ROOT

LOCK = ROOT / ".ci/constraints.txt"
LOCKFILE = ROOT / ".ci/lockfile.py"
UNLOCKED = os.environ.get("MLOPS_BASICS_LOCK") == "none"  # .ci/newest: the newest versions, on purpose not the lock's


def lockfile(*args, python: str = sys.executable, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([python, str(LOCKFILE), *map(str, args)], capture_output=True, text=True, timeout=60, **kw)


def locked() -> dict[str, str]:
    return dict(l.split("==") for l in LOCK.read_text().splitlines() if l and not l.startswith("#"))


def requirement_names() -> set[str]:
    "Every package settings.ini names, in any extra (normalized as pip compares them)."
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    reqs = [r for k, v in cfg["DEFAULT"].items() if k == "requirements" or k.endswith("_requirements") for r in v.split()]
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", r)[0]).lower() for r in reqs}


def test_the_lock_holds_names_and_versions_only():
    lines = [l for l in LOCK.read_text().splitlines() if l and not l.startswith("#")]
    assert len(lines) > 100, "the lock should pin the whole development environment"
    bad = [l for l in lines if not re.fullmatch(r"[a-z0-9][a-z0-9-]*==[0-9][0-9A-Za-z.!_-]*", l)]
    assert not bad, f"not `name==version` (no URL, path, option, marker or local label): {bad[:5]}"
    names = [l.split("==")[0] for l in lines]
    assert names == sorted(set(names)), "one line per package, sorted"
    assert "mlops-basics" not in names and "pip" not in names
    assert not re.search(r"://|/opt/|/work/|/home/|/root/|\+cpu", "\n".join(lines)), "nothing of the machine that wrote it"


def test_every_requirement_of_every_extra_is_locked():
    missing = requirement_names() - set(locked())
    assert not missing, f"settings.ini names packages the lock does not pin: {sorted(missing)}. Fix: bash .ci/lock"


def test_the_suite_runs_on_exactly_the_locked_versions():
    "The environment these tests run in was installed from the lock: every package at its locked version."
    if UNLOCKED:
        pytest.skip("installed without the lock (MLOPS_BASICS_LOCK=none): .ci/newest reports the differences")
    r = lockfile("check", LOCK)
    assert r.returncode == 0, r.stdout + r.stderr


def test_lockfile_check_and_diff_name_what_differs(tmp_path):
    assert lockfile("freeze", tmp_path / "now.txt").returncode == 0  # this environment, whatever it is (.ci/newest: unlocked)
    versions = dict(l.split("==") for l in (tmp_path / "now.txt").read_text().splitlines() if l and not l.startswith("#"))
    changed = dict(versions, numpy="0.0.1")
    changed.pop("pyyaml")
    other = tmp_path / "lock.txt"
    other.write_text("".join(f"{n}=={v}\n" for n, v in changed.items()))
    r = lockfile("check", other)
    assert r.returncode == 1 and "| numpy | 0.0.1 | " in r.stdout and "| pyyaml | - | " in r.stdout, r.stdout
    assert "Fix: bash .ci/setup-venv" in r.stderr
    r = lockfile("diff", other, tmp_path / "diff.md")
    assert r.returncode == 0 and (tmp_path / "diff.md").read_text().startswith("2 packages differ from the lock")
    other.write_text("numpy>=1.26\n")
    r = lockfile("check", other)
    assert r.returncode == 1 and "is not a `name==version` line" in r.stderr and "Traceback" not in r.stderr


def test_lockfile_freeze_writes_what_check_accepts(tmp_path):
    out = tmp_path / "lock.txt"
    assert lockfile("freeze", out).returncode == 0
    assert lockfile("check", out).returncode == 0
    assert not list(tmp_path.glob("*.tmp")), "written atomically, nothing left behind"


def test_setup_venv_refuses_an_unknown_extra_and_a_missing_lock(tmp_path):
    env = {**os.environ, "MLOPS_BASICS_VENV": str(tmp_path / "venv")}
    r = subprocess.run(["bash", ROOT / ".ci/setup-venv"], env={**env, "MLOPS_BASICS_EXTRAS": "serve,gpu"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "'gpu', which is not an extra" in r.stderr and "Fix:" in r.stderr, r.stderr
    r = subprocess.run(["bash", ROOT / ".ci/setup-venv"], env={**env, "MLOPS_BASICS_LOCK": str(tmp_path / "none.txt")},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no lock file" in r.stderr and "Fix:" in r.stderr, r.stderr
    assert not (tmp_path / "venv").exists(), "a refused setting creates nothing"


JOBS = {  # script -> the extras it asks for; none of them brings torch
    ".ci/lint": "lint", ".ci/deploy": "serve,lambda,aws,version", ".ci/publish": "serve,lambda,aws,version",
    ".ci/deploy-lambda": "serve,lambda,aws,version", ".ci/monitor": "serve,aws,monitor",
}


@pytest.mark.parametrize("script", JOBS)
def test_torch_free_jobs_ask_only_for_their_extras(script):
    text = (ROOT / script).read_text()
    asked = re.findall(r"MLOPS_BASICS_EXTRAS=(\S+) bash \.ci/setup-venv", text)
    assert asked and asked[0] == JOBS[script], f"{script} asks for {asked}"
    assert not re.search(r"^\s*bash \.ci/setup-venv", text, flags=re.M), f"{script} also installs everything"


def test_a_torch_free_venv_runs_every_aws_and_monitoring_command(tmp_path):
    "The deploy and monitor jobs' extras together: each module imports and each command's --help works, without torch."
    venv = tmp_path / "venv"
    env = {**os.environ, "MLOPS_BASICS_VENV": str(venv), "MLOPS_BASICS_EXTRAS": "serve,lambda,aws,monitor,version"}
    r = subprocess.run(["bash", ROOT / ".ci/setup-venv"], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    py = str(venv / "bin/python")
    assert UNLOCKED or lockfile("check", LOCK, python=py).returncode == 0, "the job's venv is at the locked versions too"
    code = ("import importlib.util, sys, mlops_basics.serve, mlops_basics.serverless, mlops_basics.registries, "
            "mlops_basics.monitoring, mlops_basics.cicd, mlops_basics.versioning; "
            "print(importlib.util.find_spec('torch') is None, [m for m in ('torch', 'lightning', 'transformers') if m in sys.modules])")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split("\n")[0] == "True []", r.stdout + r.stderr
    for cmd in ("registry", "lambda", "monitor", "ci", "bundle", "serve", "dvc"):
        r = subprocess.run([venv / "bin" / f"mlops-basics-{cmd}", "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "usage:" in r.stdout, f"mlops-basics-{cmd}: {r.stderr[-500:]}"
