"""The package as pip builds it (configs in the wheel, a torch-free serve extra) and the rules every module keeps."""
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from conftest import ROOT

def build_wheel(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in ("setup.py", "settings.ini", "README.md"):
        shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / "mlops_basics", src / "mlops_basics", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = (tmp_path / "dist").glob("*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_ships_configs_and_a_torch_free_serve_extra(tmp_path):
    whl = build_wheel(tmp_path)
    names = set(whl.namelist())
    for group in ("config", "model/minilm", "model/bert_tiny", "model/tiny_random", "training/full", "training/smoke",
                  "data/cola", "logger/wandb", "logger/csv"):
        assert f"mlops_basics/conf/{group}.yaml" in names, group
    meta = Parser().parsestr(whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    reqs = meta.get_all("Requires-Dist")
    serve = [r.split(";")[0].strip() for r in reqs if "extra == \"serve\"" in r]
    core = [r for r in reqs if "extra ==" not in r]
    assert serve and {"onnxruntime", "tokenizers", "fastapi"} <= {r.split(">")[0].split("=")[0].split("<")[0] for r in serve}
    heavy = ("torch", "lightning", "transformers", "datasets")
    assert not [r for r in serve + core if r.split(">")[0].split("=")[0].split("<")[0].strip() in heavy]
    entry = whl.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "mlops-basics-train = mlops_basics.train:main" in entry and "mlops-basics-course = mlops_basics.core:main" in entry


def _raised_errors():
    "Every `raise SomeError(...)` call in the package: (module, line, call)."
    import ast
    for p in sorted((ROOT / "mlops_basics").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
                if name.endswith("Error") or name == "Overloaded":
                    yield p.name, node.lineno, node.exc


def test_every_error_the_package_raises_carries_its_fix_as_data():
    import ast
    calls = list(_raised_errors())
    assert len(calls) > 50  # the walk really found the package's raise sites
    no_fix = [f"{m}:{n}" for m, n, c in calls if "fix" not in {k.arg for k in c.keywords}]
    assert no_fix == [], f"raise sites without fix=...: {no_fix}"
    inline = [f"{m}:{n}" for m, n, c in calls if c.args and "Fix:" in ast.unparse(c.args[0])]
    assert inline == [], f"fix written into the problem text: {inline}"


def test_an_error_is_one_line_with_problem_and_fix_apart():
    from mlops_basics.core import DataError
    e = DataError("train.tsv:3: the sentence\n is empty", fix="add it or delete line 3.")
    assert (e.problem, e.fix) == ("train.tsv:3: the sentence is empty", "add it or delete line 3.")
    assert str(e) == "train.tsv:3: the sentence is empty. Fix: add it or delete line 3."
