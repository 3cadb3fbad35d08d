"""The package's layers: no import circles, and no import running back up from the core and the models to
the engine and the front ends."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import defectlens

PACKAGE = Path(defectlens.__file__).parent
# A module of the first layer may not import from the second (at module level or inside a function).
FORBIDDEN = [
    ("defectlens.core", "defectlens.models"),
    ("defectlens.core", "defectlens.engine"),
    ("defectlens.models", "defectlens.engine"),
    ("defectlens.audio.models", "defectlens.engine"),
    ("defectlens.post", "defectlens.models"),
    ("defectlens.inference", "defectlens.models"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the modules it imports (absolute names; `from X import Y` counts Y when it is a module)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                named = {f"{node.module}.{alias.name}" for alias in node.names}
                imported |= named & modules.keys()
        graph[name] = imported
    return graph


def _within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def test_no_import_circles():
    graph = _imports()
    internal = {m: {i for i in imports if i in graph and i != m} for m, imports in graph.items()}
    # A package's __init__ importing its own modules is not a circle; only module-to-module edges count.
    packages = {m for m in graph if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()}
    edges = {m: imports - packages for m, imports in internal.items() if m not in packages}
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                circles.append(path[path.index(target) :] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize(("layer", "above"), FORBIDDEN)
def test_no_import_runs_back_up_the_layers(layer, above):
    offending = sorted(
        f"{module} imports {target}"
        for module, imports in _imports().items()
        if _within(module, layer)
        for target in imports
        if _within(target, above)
    )
    assert not offending, offending
