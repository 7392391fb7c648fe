"""The lock, .ci/constraints.txt: the versions the suite was last run with, one `name==version` a line.

Every install of the project (.ci/setup-venv, the image builds) passes it to the installer as a constraints file
(`-c`): it fixes the version of whatever gets installed and installs nothing by itself, so one lock serves the
full development environment and a job's torch-free extras alike. It records packages and versions only: no
index, no download address, no path (a `uv.lock` or a compiled requirements file would carry the mirrors and
local files of the machine that wrote it). Standard library only, so any venv's python runs it:

    python .ci/lockfile.py freeze OUT          write the lock from this python's installed packages
    python .ci/lockfile.py check LOCK          exit 1 when this python's packages differ from LOCK (or LOCK is malformed)
    python .ci/lockfile.py diff LOCK [OUT_MD]  a Markdown table of the packages that differ from LOCK
"""
import re
import sys
from importlib import metadata
from pathlib import Path

SELF = "mlops-basics"  # the project itself is installed from the checkout, never from the lock
SKIP = {SELF, "pip"}  # pip: the venv's own, whichever Python brought it
LINE = re.compile(r"^([a-z0-9][a-z0-9._-]*)==([0-9][0-9A-Za-z.!_-]*)$")
HEADER = """\
# The lock: the versions of every package the test suite last passed with (mlops-basics[dev], Linux, Python 3.11).
# .ci/setup-venv installs with it as a constraints file (-c), for the full environment and for a job's extras alike.
# settings.ini keeps the ranges a library user needs. Update: bash .ci/lock (then bash .ci/test-all, and commit).
# Versions only (no index, address or path); local build labels such as +cpu are dropped: torch==X matches X+cpu.
"""


def norm(name: str) -> str:
    "A distribution name as PEP 503 compares them: lower case, runs of -_. as one '-'."
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    "Name -> version of this python's distributions, local labels dropped, the project and pip left out."
    found = {norm(d.metadata["Name"]): d.version.split("+")[0] for d in metadata.distributions() if d.metadata["Name"]}
    return {n: v for n, v in sorted(found.items()) if n not in SKIP}


def read(path: str | Path) -> dict[str, str]:
    "Name -> version of a lock file; a line that is not `name==version` (or a comment) is an error naming it."
    out = {}
    for i, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = LINE.match(line)
        if not m:
            raise SystemExit(f"lockfile: error: {path}:{i}: {raw!r} is not a `name==version` line. "
                             "Fix: write the lock with `bash .ci/lock`; it holds versions only (no URL, path or option).")
        out[m[1]] = m[2]
    return out


def write(path: str | Path, versions: dict[str, str]) -> None:
    "Write the lock atomically (a temporary file, then a rename)."
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(HEADER + "".join(f"{n}=={v}\n" for n, v in sorted(versions.items())), encoding="utf-8")
    tmp.replace(path)


def differences(locked: dict[str, str], now: dict[str, str]) -> list[tuple[str, str, str]]:
    "(name, locked, installed) for every package whose version differs; '-' where one side lacks it."
    return [(n, locked.get(n, "-"), now.get(n, "-")) for n in sorted(set(locked) | set(now)) if locked.get(n) != now.get(n)]


def table(diffs: list[tuple[str, str, str]]) -> str:
    "The differences as a Markdown table."
    if not diffs:
        return "No package differs from the lock.\n"
    rows = "".join(f"| {n} | {a} | {b} |\n" for n, a, b in diffs)
    return f"{len(diffs)} packages differ from the lock:\n\n| package | locked | installed |\n|---|---|---|\n{rows}"


def main(argv: list[str]) -> int:
    "The command line (see the module's text)."
    cmd, *args = argv or ["help"]
    if cmd == "freeze" and len(args) == 1:
        write(args[0], installed())
        print(f"lockfile: {len(installed())} packages written to {args[0]}")
        return 0
    if cmd == "check" and len(args) == 1:
        diffs = [d for d in differences(read(args[0]), installed()) if d[2] != "-"]  # locked extras not installed: fine
        if diffs:
            print(table(diffs), end="")
            print(f"lockfile: error: the environment does not match {args[0]}. Fix: bash .ci/setup-venv (it installs with the lock).",
                  file=sys.stderr)
            return 1
        print(f"lockfile: every installed package is at its locked version ({args[0]})")
        return 0
    if cmd == "diff" and len(args) in (1, 2):
        text = table(differences(read(args[0]), installed()))
        Path(args[1]).write_text(text, encoding="utf-8") if len(args) == 2 else print(text, end="")
        return 0
    print(__doc__, file=sys.stderr)
    return 0 if cmd in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
