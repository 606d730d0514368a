"""The layering rule, checked on every module's imports (lazy imports inside functions included).

    cli -> commands -> stages -> data, bundle, models -> errors, fileio, optional, progress

No module imports from a higher layer, and neither modules nor the packages of one layer import
each other in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "matting_deploy"
STAGES = ("export", "calib", "quantize", "validate", "runtimes", "infer", "benchmark", "check")
LAYERS = {
    "cli": 4,
    "commands": 3,
    **{s: 2 for s in STAGES},
    "data": 1, "bundle": 1, "models": 1,
    "errors": 0, "fileio": 0, "optional": 0, "progress": 0, "__init__": 0,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def unit(module: str) -> str:
    """The layer unit of a module: its top-level folder or file under matting_deploy."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(module: str) -> set[str]:
    """Every matting_deploy module ``module`` imports (anywhere in the file), resolved."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from pkg import submodule" imports the submodule
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        out |= {n for n in names if n == "matting_deploy" or n.startswith("matting_deploy.")}
    return {n if n in MODULES else n.rsplit(".", 1)[0] for n in out} - {module}


GRAPH = {m: imports(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_belongs_to_a_layer():
    assert not sorted({unit(m) for m in MODULES} - set(LAYERS))


def test_no_import_from_a_higher_layer():
    wrong = [f"{m} ({LAYERS[unit(m)]}) imports {t} ({LAYERS[unit(t)]})"
             for m, targets in GRAPH.items() for t in sorted(targets)
             if LAYERS[unit(t)] > LAYERS[unit(m)]]
    assert not wrong, "\n".join(wrong)


def test_no_module_import_cycles():
    assert not _cycles(GRAPH)


def test_no_cycles_between_packages_of_a_layer():
    units = {}
    for m, targets in GRAPH.items():
        units.setdefault(unit(m), set()).update(unit(t) for t in targets if unit(t) != unit(m))
    assert not _cycles(units)


def test_runtimes_is_engines_only():
    """Engines import no other stage (stages build on runtimes, never the other way round)."""
    wrong = [f"{m} imports {t}" for m, targets in GRAPH.items() if unit(m) == "runtimes"
             for t in targets if unit(t) in STAGES and unit(t) != "runtimes"]
    assert not wrong


def test_the_check_sees_lazy_imports():
    """Imports inside functions count (commands import their stage lazily, for a fast --help)."""
    assert "matting_deploy.benchmark.pipeline" in GRAPH["matting_deploy.commands.bench"]
    assert "matting_deploy.quantize.pipeline" in GRAPH["matting_deploy.commands.calibrate"]
