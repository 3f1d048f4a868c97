"""The layout of src/grokjax (docs/architecture.md): every module sits on a floor and imports
only from floors below its own, so there is no import circle, and the rules of the design hold.
Imports are read with ``ast`` (function-local ones included), nothing is executed."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).parents[1] / "src" / "grokjax"

# Bottom to top; a module imports only from floors below its own (never from its own floor).
FLOORS = [
    ["errors"],
    ["irreps", "expressions", "stats", "survival", "storage", "model", "optim", "progress",
     "toml_writer", "memlimit", "weights"],
    ["groups"],
    ["dataset", "diagnostics"],
    ["outdir"],
    ["config"],
    ["schema"],
    ["stop", "search"],
    ["spec", "train"],
    ["plan"],
    ["analysis.core"],
    ["analysis.figures", "analysis.markdown"],
    ["analysis.boundary", "analysis.dynamics", "analysis.generalization_map",
     "analysis.grokking_time", "analysis.lr", "analysis.wd", "analysis.width"],
    ["analysis.collapse", "analysis.grok_law", "analysis.irrep", "analysis.report"],
    ["analysis"],
    ["engine"],
    ["rounds", "coordination", "chunks"],
    ["tables"],
    ["sweep", "export"],
    ["ray_sweep"],
    ["api"],
    ["aot"],
    ["grokjax"],  # the package itself: grokjax.run, load, Results, __version__
    ["cli"],
]
FLOOR = {module: level for level, modules in enumerate(FLOORS) for module in modules}
# Modules that must never reach these (directly or through any chain of imports).
NEVER = {
    ("spec", "config", "plan", "schema", "search"): ("outdir", "storage"),
    ("outdir", "storage", "coordination"): ("spec", "config", "analysis"),
    ("engine", "train"): ("pandas",),
}
# What the analyses may import besides themselves: the tables' meaning, never their files.
ANALYSIS_MAY_IMPORT = {"schema", "config", "stats", "survival", "groups"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    name = ".".join(parts).removesuffix("__init__").rstrip(".")
    return name or "grokjax"


def imports(path: pathlib.Path) -> set[str]:
    """The grokjax modules (by their FLOORS name) and the top-level third-party packages that
    ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            if node.module != "grokjax":  # the package itself only when a name is not a module
                names.append(node.module)
        else:
            continue
        for name in names:
            if name == "grokjax" or not name.startswith("grokjax."):
                found.add(name.split(".")[0] if name != "grokjax" else "grokjax")
                continue
            inner = name.removeprefix("grokjax.")
            # the longest known module the name starts with (a module, or a name inside one)
            while inner and inner not in FLOOR:
                inner = inner.rpartition(".")[0]
            found.add(inner or "grokjax")
    return found


GRAPH = {module_name(path): imports(path) - {module_name(path)}
         for path in sorted(PACKAGE.rglob("*.py"))}


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_module_has_a_floor():
    assert sorted(set(GRAPH) - set(FLOOR)) == [], "place new modules in FLOORS (and the docs)"
    assert sorted(set(FLOOR) - set(GRAPH)) == [], "FLOORS names a module that does not exist"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down(module):
    upward = sorted(target for target in GRAPH[module]
                    if target in FLOOR and FLOOR[target] >= FLOOR[module])
    assert upward == [], f"{module} (floor {FLOOR[module]}) imports {upward} at or above it"


def test_no_import_circle():
    assert [module for module in GRAPH if module in reachable(module)] == []


@pytest.mark.parametrize("sources, forbidden", NEVER.items())
def test_design_rules(sources, forbidden):
    for source in sources:
        reached = reachable(source)
        hits = [name for name in forbidden
                if name in reached or any(r.startswith(f"{name}.") for r in reached)]
        assert hits == [], f"{source} reaches {hits}"


def test_analyses_read_only_the_meaning_of_the_tables():
    for module, targets in GRAPH.items():
        if module.startswith("analysis"):
            grokjax_targets = {t for t in targets if t in FLOOR and not t.startswith("analysis")}
            assert grokjax_targets <= ANALYSIS_MAY_IMPORT, f"{module} imports {grokjax_targets}"


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    """The checks above can fail: a planted upward import is found."""
    planted = tmp_path / "planted.py"
    planted.write_text("from grokjax import cli\nfrom grokjax.analysis.core import FitResult\n")
    assert imports(planted) == {"cli", "analysis.core"}
