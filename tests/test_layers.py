"""The layers, in the order the data flows, checked by walking every module's imports (ast).

pure rules ← portfolio ← execution ← decisions ← interfaces (admin, commands, tasks, API, urls)

- a pure rule module imports no Django and no orchestration module (only other pure modules);
- ``portfolio`` imports neither ``execution`` nor ``decisions``;
- ``execution`` does not import ``decisions``;
- the engine's modules do not import the demo, benchmark and sample-data tooling;
- interfaces may import anything below them; nothing below imports an interface (the tooling,
  which drives the engine from outside as an operator or an upstream system would, may).

Imports inside functions count as much as those at the top: an arrow hidden in a function body
is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("portfolio", "execution", "decisions")
RANK = {"portfolio": 1, "execution": 2, "decisions": 3}

#: Rules: no Django, no ORM, no clock. They may import one another.
PURE_MODULES = frozenset(
    {
        "portfolio.circuit_breaker",
        "portfolio.correlation",
        "portfolio.formatting",
        "portfolio.indicators",
        "portfolio.market_calendar",
        "portfolio.metrics",
        "portfolio.rebalancer",
        "portfolio.reconciliation_rules",
        "portfolio.reserve",
        "portfolio.risk_levels",
        "portfolio.risk_thresholds",
        "portfolio.tier_controller",
        "portfolio.tiers",
        "portfolio.valuation",
        "execution.account_rules",
        "execution.keys",
        "execution.risk",
        "decisions.counterfactual",
        "decisions.rules",
        "decisions.sizing",
        "decisions.vocabulary",
    }
)
#: Project infrastructure every layer may use; it imports no app.
INFRASTRUCTURE = frozenset({"project.bulk", "project.env", "project.cache"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_interface(name: str) -> bool:
    parts = name.split(".")
    return (
        parts[0] == "project"
        and name not in INFRASTRUCTURE
        or "admin" in parts
        or "management" in parts
        or "api" in parts
        or parts[-1] in {"tasks", "urls", "views", "apps"}
    )


def is_tooling(name: str) -> bool:
    return name.startswith("decisions.tooling")


def layer_of(name: str) -> str:
    if name in PURE_MODULES:
        return "pure"
    if name in INFRASTRUCTURE:
        return "infrastructure"
    if is_interface(name):
        return "interface"
    if is_tooling(name):
        return "tooling"
    return name.split(".")[0]


def project_modules() -> dict[str, Path]:
    found = {}
    for top in (*APPS, "project"):
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found[module_name(path)] = path
    return found


MODULES = project_modules()


def imports_of(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # ``from portfolio import selectors`` names the module portfolio.selectors.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_targets(path: Path) -> set[str]:
    """The project modules ``path`` imports (a name that is a package's attribute, not a module,
    counts as its package)."""
    targets = set()
    for name in imports_of(path):
        top = name.split(".")[0]
        if top not in (*APPS, "project"):
            continue
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            targets.add(name)
    return targets


def wrong_arrow(source: str, target: str) -> str | None:
    """Why ``source`` may not import ``target``; None when the arrow is right."""
    src, dst = layer_of(source), layer_of(target)
    if src == "pure" and dst != "pure":
        return "a pure rule imports only other pure rules"
    if dst == "interface" and src not in {"interface", "tooling"}:
        return "nothing below the interfaces imports an interface"
    if dst == "tooling" and src not in {"tooling", "interface"}:
        return "the engine does not import its demo and benchmark tooling"
    if src == "infrastructure" and dst != "infrastructure":
        return "project infrastructure imports no app"
    # Between apps the package decides, pure modules included: portfolio's rules sit below
    # execution's, and execution's below the decision rules.
    src_app, dst_app = source.split(".")[0], target.split(".")[0]
    below = src_app in RANK and dst_app in RANK and RANK[dst_app] > RANK[src_app]
    if src != "interface" and below:
        return f"{src_app} sits below {dst_app} and may not import it"
    return None


def test_every_module_is_classified():
    """A new module lands in a layer on purpose: pure modules are listed here by name."""
    assert MODULES, "no modules found"
    for name in PURE_MODULES | INFRASTRUCTURE:
        assert name in MODULES, f"{name} is listed but does not exist"


@pytest.mark.parametrize("name", sorted(PURE_MODULES))
def test_pure_rules_import_no_django(name):
    django = sorted(n for n in imports_of(MODULES[name]) if n.split(".")[0] == "django")
    assert not django, f"{name} is a pure rule but imports {django}"


def test_no_import_runs_against_the_flow_of_data():
    wrong = []
    for source, path in sorted(MODULES.items()):
        for target in sorted(project_targets(path)):
            why = wrong_arrow(source, target)
            if why:
                wrong.append(f"{source} → {target}: {why}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "target", "wrong"),
    [
        ("portfolio.selectors", "execution.models", True),
        ("portfolio.books", "decisions.sizing", True),
        ("portfolio.valuation", "decisions.vocabulary", True),
        ("execution.risk", "decisions.vocabulary", True),
        ("execution.worker", "decisions.engine", True),
        ("decisions.rules", "portfolio.models", True),
        ("decisions.engine", "decisions.tooling.demo", True),
        ("portfolio.selectors", "portfolio.admin", True),
        ("decisions.engine", "execution.selectors", False),
        ("execution.worker", "portfolio.books", False),
        ("portfolio.admin", "execution.selectors", False),
        ("decisions.rules", "portfolio.circuit_breaker", False),
        ("decisions.management.commands.demo", "decisions.tooling.demo", False),
    ],
)
def test_the_arrow_rule_itself(source, target, wrong):
    """The checker would catch each wrong arrow the layering forbids (so the walk above can
    fail), and lets the right ones through."""
    assert (wrong_arrow(source, target) is not None) is wrong
