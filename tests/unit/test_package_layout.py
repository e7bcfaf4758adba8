"""The package graph: ruleadmin -> rulegate <- gateway_agent, nothing imports ruleadmin, no module cycles."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rulegate", "gateway_agent", "ruleadmin", "rulegate_dev")


def imports_of(path: Path, package: str) -> set[str]:
    """Return the project modules imported by one file (relative imports resolved, lazy ones included)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` imports are for annotations only
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            node.body = []
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    parent = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parent.split(".")[: len(parent.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                out |= {name} if node.module else {f"{name}.{a.name}" for a in node.names}
            elif node.module:
                out.add(node.module)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    modules: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = imports_of(path, package)
    return modules


@pytest.mark.parametrize("importer, forbidden", [
    ("rulegate", ("ruleadmin", "gateway_agent", "rulegate_dev")),
    ("gateway_agent", ("ruleadmin", "rulegate_dev")),
    ("ruleadmin", ("gateway_agent", "rulegate_dev")),
    ("rulegate_dev", ("ruleadmin", "gateway_agent")),
])
def test_imports_point_one_way(importer: str, forbidden: tuple[str, ...]) -> None:
    """The core imports neither side; the admin and the agent import the core, never each other."""
    bad = {(m, dep) for m, deps in graph().items() if m.split(".")[0] == importer
           for dep in deps if dep.split(".")[0] in forbidden}
    assert bad == set()


def test_no_import_cycles() -> None:
    """No module reaches itself through project imports (lazy imports inside functions count too)."""
    g = graph()
    names = set(g)

    def resolve(dep: str) -> str | None:
        while dep and dep not in names:
            dep = dep.rpartition(".")[0]
        return dep or None

    edges = {m: {r for d in deps if (r := resolve(d)) and r != m and r not in PACKAGES} for m, deps in g.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []
