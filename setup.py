"""Packaging for mlops-basics (nbdev 2 layout): everything is read from settings.ini."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=["="])
cfg.read(here / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]


def reqs(key: str) -> list[str]:
    """Whitespace-separated requirement list from settings.ini."""
    return cfg.get(key, "").split()


extras = {k: reqs(f"{k}_requirements") for k in ("train", "serve", "lambda", "aws", "monitor", "version")}
extras["all"] = sorted({r for v in extras.values() for r in v})
extras["lint"] = reqs("lint_requirements")
extras["dev"] = extras["all"] + extras["lint"] + reqs("dev_requirements")

readme = here / "README.md"
setuptools.setup(
    name=cfg["repo"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=readme.read_text(encoding="utf-8") if readme.exists() else "",
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=cfg["git_url"],
    license="Apache-2.0",
    keywords=cfg["keywords"],
    python_requires=f">={cfg['min_python']}",
    # namespace discovery so that the config folders (mlops_basics/conf/...) ship with their YAML files
    packages=setuptools.find_namespace_packages(include=["mlops_basics", "mlops_basics.*"]),
    package_data={"": ["*.yaml"]},
    install_requires=reqs("requirements"),
    extras_require=extras,
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
