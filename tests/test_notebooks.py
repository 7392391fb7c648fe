"""The course notebooks follow the conventions the runner and the package rely on."""
import re
import nbformat
import pytest
from conftest import ROOT

NBS = sorted((ROOT / "nbs").glob("[0-9][0-9]_*.ipynb"))
LIB = sorted((ROOT / "nbs" / "lib").glob("*.ipynb"))  # the library notebooks: one module each


def test_one_notebook_per_week_in_order():
    weeks = [int(p.name[:2]) for p in NBS]
    assert weeks == list(range(len(weeks))) and len(weeks) >= 3


@pytest.mark.parametrize("path", NBS, ids=lambda p: p.name)
def test_parameters_cell_and_module(path):
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one papermill parameters cell"
    for name in ("profile", "output_dir", "data_dir", "model_name"):
        assert re.search(rf"^{name} = ", params[0].source, re.M), name
    assert any(c.source.startswith("#| default_exp ") for c in nb.cells if c.cell_type == "code")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# Week ")


@pytest.mark.parametrize("path", [*NBS, *LIB, ROOT / "nbs" / "index.ipynb"], ids=lambda p: p.name)
def test_committed_outputs_are_clean(path):
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert o.output_type != "error", f"{path.name}: a committed output is an error"
            text = o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
            assert not re.search(r"/(root|home|tmp|work)/", text), f"{path.name}: machine path in output: {text[:120]}"
            assert "Traceback" not in text and "\r" not in text, f"{path.name}: traceback or progress bar in output"
            assert "\x1b[" not in text, f"{path.name}: terminal colour codes in output: {text[:120]!r}"
            assert not (o.output_type == "stream" and o.name == "stderr"), f"{path.name}: stray stderr output: {text[:120]}"
            assert "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), f"{path.name}: a widget (progress bar) output"


@pytest.mark.parametrize("path", [*NBS, *LIB, ROOT / "nbs" / "index.ipynb"], ids=lambda p: p.name)
def test_exported_cells_are_short(path):
    "A learner takes in a cell of at most ~40 lines; longer code is built up over several cells (fastcore's @patch)."
    nb = nbformat.read(path, as_version=4)
    long = [(i, len(c.source.splitlines())) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and c.source.startswith("#| export") and len(c.source.splitlines()) > 41]
    assert not long, f"{path.name}: exported cells over 40 lines (cell index, lines): {long}"


@pytest.mark.parametrize("path", LIB, ids=lambda p: p.name)
def test_library_notebook_exports_one_module_of_its_own(path):
    "A library notebook: a title (not a week's), one `#| default_exp`, and no cell exported elsewhere (`#| export other`)."
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ") and not nb.cells[0].source.startswith("# Week ")
    exps = [c.source.split()[2] for c in nb.cells if c.cell_type == "code" and c.source.startswith("#| default_exp ")]
    assert exps == [path.stem], f"{path.name}: default_exp {exps}, expected [{path.stem!r}]"
    assert not [c for c in nb.cells if c.cell_type == "code" and re.match(r"#\| export \S", c.source)], "an export to another module"


def test_no_module_imports_another_modules_private_names():
    "Modules share public names only: `from .other import _name` (or `from mlops_basics.other import _name`) is a reach inside."
    reach = []
    for py in sorted((ROOT / "mlops_basics").glob("*.py")):
        for m in re.finditer(r"^\s*from (?:\.|mlops_basics\.)(\w+) import ([^\n]+)$", py.read_text(), re.M):
            reach += [f"{py.name}: {m[1]}.{n.strip()}" for n in m[2].split(",") if n.strip().startswith("_")]
    assert not reach, reach
