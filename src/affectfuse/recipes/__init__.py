"""The papers' training recipes, shipped with the package and addressable by name from any folder.

Each ``<name>.yaml`` here holds :class:`~affectfuse.inference.train_config.TrainConfig` fields; its header
comments name the paper, the settings it reports and its ``Reported`` numbers. ``--config`` takes a recipe
name (``viper_reaction``) or the path of any YAML file:

    >>> resolve("jmt_va").name
    'jmt_va.yaml'
    >>> [r.name for r in list_recipes()][:2]
    ['abaw5_eri', 'abaw5_expr']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Recipe", "list_recipes", "resolve", "RECIPES_DIR"]

RECIPES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Recipe:
    """A shipped recipe.

    Attributes:
        name: its name (the file stem).
        path: the YAML file.
        title: the header's first line (paper, dataset, task, metric).
        reported: the header's ``Reported`` sentence (the paper's numbers).
        model: the registered model it trains.
        task: the task it trains for.
    """

    name: str
    path: Path
    title: str
    reported: str
    model: str
    task: str


def _header(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def _read(path: Path) -> Recipe:
    import yaml

    head = _header(path)
    text = " ".join(head)
    m = re.search(r"Reported[^:]*:\s*(.*?)(?=\s+Features\b|\s+These\b|$)", text)
    reported = m.group(0).strip() if m else ""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return Recipe(path.stem, path, head[0] if head else "", reported, str(data.get("model", "")),
                  str(data.get("task", "")))


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, by name."""
    return [_read(p) for p in sorted(RECIPES_DIR.glob("*.yaml"))]


def resolve(name_or_path: str | Path) -> Path:
    """The YAML file ``--config`` names: an existing file path, else a shipped recipe's name.

    Raises:
        FileNotFoundError: neither a file nor a recipe; the message lists the recipes.
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    shipped = RECIPES_DIR / f"{stem}.yaml"
    if shipped.is_file() and (p.parent == Path(".") or p.parent.name == "recipes"):
        return shipped
    names = ", ".join(r.stem for r in sorted(RECIPES_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"--config {name_or_path}: no such file, and not a shipped recipe (recipes: {names}; "
                            "`affectfuse recipes` lists them)")
