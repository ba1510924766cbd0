"""The house rules, checked on the source: floors, no import circles, small modules and functions, ``__all__``.

Floors, low to high (a module may import from its own floor or below, never above; a test below also rejects any
import circle, function-local imports included):

1. plumbing: plumbing, preprocessing, progress, trace, layernames, edits, layouts, stats, cache, checkpoints, toyworld,
   conceptmaps (concept-name mappings), basis (reading a layer in units, dictionary features or directions)
2. core computation: dissect, ablation, gradcam, imaging, metrics, models, zoo.arch, sae, directions, textimage
3. experiments: generator_units, paint, inversion, omission, unitviz, adapters, label_checks, openvocab
4. front: widgets, zoo (registry, bundled dissections, training, evaluation), formats, hf, fid_score, clip_files
5. entry points: apps, the command line (__main__), the facade (ganviz/__init__.py)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ganviz"

FLOORS = {
    1: ["plumbing", "preprocessing", "progress", "trace", "layernames", "edits", "layouts", "stats", "cache", "adam_loop",
        "checkpoints", "toyworld", "conceptmaps", "basis", "charts", "hooks"],
    2: ["dissect", "ablation", "gradcam", "imaging", "metrics", "models", "zoo.arch", "sae", "directions",
        "textimage"],
    3: ["generator_units", "paint", "inversion", "omission", "unitviz", "adapters", "label_checks", "openvocab"],
    4: ["widgets", "zoo", "formats", "hf", "fid_score", "clip_files"],
    5: ["apps", "__main__", ""],  # "" is the facade, ganviz/__init__.py
}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str) -> int:
    """The floor of a module (dotted name below ``ganviz``): its longest listed prefix decides."""
    best, floor = -1, None
    for level, names in FLOORS.items():
        for name in names:
            if module == name or (name and module.startswith(name + ".")):
                if len(name) > best:
                    best, floor = len(name), level
    assert floor is not None, f"ganviz.{module} is on no floor: add it to FLOORS in {__file__}"
    return floor


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """Modules (below ``ganviz``) that an import statement of ``module`` reads from."""
    is_pkg = MODULES[module].name == "__init__.py"
    if node.level:
        base = module.split(".") if module else []
        base = base if is_pkg else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    elif node.module and (node.module == "ganviz" or node.module.startswith("ganviz.")):
        target = node.module[len("ganviz."):] if node.module != "ganviz" else ""
    else:
        return []
    out = []
    for alias in node.names:  # ``from . import zoo`` imports the submodule zoo
        sub = f"{target}.{alias.name}" if target else alias.name
        out.append(sub if sub in MODULES else target)
    return out


def imports_of(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, node))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ganviz."):
                    found.add(alias.name[len("ganviz."):])
    return {m for m in found if m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_is_on_a_floor():
    for module in MODULES:
        floor_of(module)


def test_no_module_imports_from_a_higher_floor():
    upward = [f"ganviz.{m} (floor {floor_of(m)}) imports ganviz.{t} (floor {floor_of(t)})"
              for m, targets in GRAPH.items() for t in sorted(targets) if floor_of(t) > floor_of(m)]
    assert not upward, "imports that run up the floors:\n" + "\n".join(upward)


def test_the_core_never_imports_widgets():
    offenders = [m for m, targets in GRAPH.items() if floor_of(m) < 4 and any(t.startswith("widgets") for t in targets)]
    assert not offenders


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles():
    # a package's __init__ re-exporting its own modules is not a circle when the modules import siblings directly
    graph = {m: {t for t in ts if not (MODULES[m].name != "__init__.py" and t and m.startswith(t + "."))}
             for m, ts in GRAPH.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(f"ganviz.{m}" for m in cycle)


def test_the_checks_catch_an_upward_import_and_a_circle():
    assert floor_of("trace") < floor_of("widgets.paint")
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    node = ast.parse("from ..widgets import PaintCanvas").body[0]
    assert _resolve("zoo.registry", node) == ["widgets"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small_and_declare_their_api(module):
    path = MODULES[module]
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines (limit {MAX_MODULE_LINES}): split it"
    tree = ast.parse(source)
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"
    if path.name != "__main__.py":
        assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
                   for n in tree.body), f"{path} has no __all__"
