"""The package tree is the layering: a module imports only from its own layer or the ones below,
unless the import says why on its line (``# up a layer: ...``)."""

from __future__ import annotations

import ast
from pathlib import Path

import bench

ROOT = Path(bench.__file__).parent
# Bottom to top; each entry is a top-level module or package of bench/.
LAYERS = (
    {"console", "environment", "seeding"},
    {"data", "store"},
    {"models", "recipes"},
    {"training"},
    {"run", "conformance"},
    {"tune", "sweep", "report", "perf"},
    {"cli", "__main__"},
)
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}
EXCUSE = "# up a layer:"


def part_of(module: str) -> str | None:
    names = module.split(".")
    return names[1] if names[0] == "bench" and len(names) > 1 else None


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [f"{node.module}.{alias.name}" for alias in node.names] if node.module == "bench" else [node.module]
            found += [(node.lineno, module) for module in modules]
    return found


def sources() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py") if path.parent != ROOT or path.stem != "__init__")


def test_every_part_of_bench_has_a_layer():
    parts = {path.relative_to(ROOT).parts[0].removesuffix(".py") for path in sources()}
    assert parts == set(LEVEL)


def test_no_module_imports_from_a_layer_above_without_saying_why():
    upward = []
    for path in sources():
        own = LEVEL[path.relative_to(ROOT).parts[0].removesuffix(".py")]
        lines = path.read_text().splitlines()
        for lineno, module in imports(path):
            target = part_of(module)
            if target is not None and LEVEL[target] > own and EXCUSE not in lines[lineno - 1]:
                upward.append(f"{path.relative_to(ROOT.parent)}:{lineno} imports {module}")
    assert upward == []


def test_every_package_says_its_job():
    packages = [path for path in ROOT.rglob("__init__.py")]
    undocumented = [str(path.relative_to(ROOT.parent)) for path in packages if not ast.get_docstring(ast.parse(path.read_text()))]
    assert undocumented == []
