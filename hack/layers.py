#!/usr/bin/env python3
"""The package's import layering, checked: every module under operator/modelyard is read (stdlib ``ast``,
nothing imported or run), its imports resolved to modules of the package, and every import that points up
or sideways across the declared layers is listed; so is a pure layer importing an I/O library. Exit 1 when
there is any, 0 when the graph points one way.

The sandbox (sandbox/modelyard_sandbox, the modelyard-sandbox distribution: development tooling, in neither
the wheel nor the image) is a layer of its own package: it may import modelyard's layers below its tier,
and modelyard never imports it (``modelyard sandbox`` finds it through an entry point).

    python3 hack/layers.py             # summary: modules per layer, edges between layers, violations
    python3 hack/layers.py --graph     # and every module's imports within the package

Layers, lowest first; a module may import its own layer and any layer of a lower tier, nothing else (two
layers of one tier do not know each other). Every import counts, also those inside functions: an import
deferred for start-up time is still a dependency.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / "operator" / "modelyard"
SANDBOX_ROOT = REPO / "sandbox" / "modelyard_sandbox"


@dataclass(frozen=True)
class Layer:
    name: str
    tier: int
    #: Module names (relative to the package) that belong here; a package name covers its submodules.
    members: tuple[str, ...]
    #: Pure code: spec in, objects out; no I/O library.
    pure: bool
    what: str
    #: The top-level package the members are in: modelyard's own, or a distribution of its own.
    package: str = "modelyard"


LAYERS = (
    Layer("core", 0, ("", "errors"), True, "the version and the user-error types"),
    Layer("api", 1, ("api",), True, "pydantic models, the single source of the CRDs; cluster policy"),
    Layer("catalog", 1, ("catalog",), True, "what the managed providers serve"),
    Layer("planning", 2, ("planning",), True, "the capacity planner and the model catalog"),
    Layer("manifests", 2, ("manifests",), True, "files and dicts parsed into API objects"),
    Layer("render", 3, ("render",), True, "children, gateway config and routing decisions, from specs"),
    Layer("audit", 4, ("audit",), True, "findings over API objects"),
    Layer("config", 4, ("config",), True, "operator settings from the environment"),
    Layer("cloud", 4, ("cloud",), False, "boto3, azure-identity and httpx adapters"),
    Layer("kube", 4, ("kube",), False, "the operator's Kubernetes API client"),
    Layer("controllers", 5, ("controllers",), False, "kopf handlers: parse, call pure code, apply, status"),
    Layer(
        "sandbox",
        5,
        ("",),
        False,
        "development tooling: the local control plane (its own distribution)",
        "modelyard_sandbox",
    ),
    Layer("cli", 6, ("cli", "__main__"), False, "the modelyard command"),
)
#: Libraries the tests use but modelyard does not depend on (the dev extra): no layer imports them. The
#: official Kubernetes client observes the cluster in the tests; the package has its own (modelyard.kube).
DEV_ONLY = frozenset({"kubernetes"})
#: I/O libraries a pure layer must not import (top-level distribution names).
IO_LIBRARIES = frozenset(
    {"kopf", "kubernetes", "boto3", "botocore", "azure", "httpx", "aiohttp", "urllib3", "requests"}
)


@dataclass(frozen=True)
class Import:
    source: str  #: importing module, relative to the package ("" for the package itself)
    target: str  #: imported module of the package, or a top-level third-party name
    line: int
    internal: bool
    name: str = ""  #: the imported name in full (a third-party module's dotted name)


@dataclass(frozen=True)
class Violation:
    imp: Import
    why: str

    def __str__(self) -> str:
        return f"{module_path(self.imp.source)}:{self.imp.line}: {self.why}"


def module_path(module: str, package: str = "modelyard") -> str:
    return f"{package}.{module}" if module else package


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name relative to it."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path, known: set[str], package: str) -> Iterator[Import]:
    """The imports of one module: modules of the package (resolved to the longest known module name) and
    third-party top-level names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _resolve(module, alias.name, node.lineno, known, package)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node, is_package, package)
            if base is None:
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                name = candidate if _internal_name(candidate, package) in known else base
                yield _resolve(module, name, node.lineno, known, package)


def _absolute(module: str, node: ast.ImportFrom, is_package: bool, package: str) -> str | None:
    if not node.level:
        return node.module
    here = [package, *module.split(".")] if module else [package]
    if not is_package:
        here = here[:-1]
    if node.level > 1:
        here = here[: len(here) - (node.level - 1)]
    return ".".join([*here, node.module] if node.module else here)


def _internal_name(name: str, package: str) -> str | None:
    if name == package:
        return ""
    if name.startswith(package + "."):
        return name[len(package) + 1 :]
    return None


def _resolve(source: str, name: str, line: int, known: set[str], package: str) -> Import:
    internal = _internal_name(name, package)
    if internal is None:
        return Import(source, name.partition(".")[0], line, internal=False, name=name)
    while internal and internal not in known:
        internal = internal.rpartition(".")[0]
    return Import(source, internal, line, internal=True)


def layer_of(module: str, package: str = "modelyard") -> Layer | None:
    """The layer whose longest member covers ``module`` (of ``package``)."""
    best: tuple[int, Layer] | None = None
    for layer in LAYERS:
        if layer.package != package:
            continue
        for member in layer.members:
            covers = module == member or (member and module.startswith(member + "."))
            if covers and (best is None or len(member) > best[0]):
                best = (len(member), layer)
    return best[1] if best else None


def check(found: list[Import]) -> list[Violation]:
    violations: list[Violation] = []
    for imp in found:
        source = layer_of(imp.source)
        assert source is not None
        if not imp.internal:
            if source.pure and imp.target in IO_LIBRARIES:
                violations.append(Violation(imp, f"{source.name} is pure and imports {imp.target}"))
            if imp.target in OTHER_PACKAGES:
                violations.append(
                    Violation(imp, f"{source.name} imports {imp.target}, which modelyard does not ship")
                )
            if imp.target in DEV_ONLY:
                violations.append(
                    Violation(imp, f"{source.name} imports {imp.target}, which is not a runtime dependency")
                )
            continue
        target = layer_of(imp.target)
        assert target is not None
        if target is source or target.tier < source.tier:
            continue
        kind = "sideways" if target.tier == source.tier else "up"
        violations.append(
            Violation(
                imp,
                f"{source.name} (tier {source.tier}) imports {module_path(imp.target)} "
                f"({target.name}, tier {target.tier}): a back-edge, {kind}",
            )
        )
    return violations


OTHER_PACKAGES = frozenset(layer.package for layer in LAYERS) - {"modelyard"}


@dataclass(frozen=True)
class Outside:
    """An import of modelyard by another package's module."""

    layer: Layer  #: the other package's layer
    imp: Import  #: with ``target``: the modelyard module imported

    def __str__(self) -> str:
        return f"{module_path(self.imp.source, self.layer.package)}:{self.imp.line}: " + self.why()

    def why(self) -> str:
        target = layer_of(self.imp.target)
        assert target is not None
        return (
            f"{self.layer.name} (tier {self.layer.tier}) imports {module_path(self.imp.target)} "
            f"({target.name}, tier {target.tier}): a back-edge"
        )

    def ok(self) -> bool:
        target = layer_of(self.imp.target)
        return target is not None and target.tier < self.layer.tier


def analyse_outside(root: Path, known: set[str]) -> tuple[Layer, dict[str, Path], list[Outside]]:
    """Another package (the sandbox) under ``root``: its layer, its modules, and its imports of modelyard
    (resolved against modelyard's ``known`` modules)."""
    package = root.name
    layer = next(layer for layer in LAYERS if layer.package == package)
    found_modules = modules(root)
    found = [
        Outside(layer, _resolve(imp.source, imp.name, imp.line, known, "modelyard"))
        for module, path in found_modules.items()
        for imp in imports(module, path, set(found_modules), package)
        if not imp.internal and imp.target == "modelyard"
    ]
    return layer, found_modules, found


def analyse(root: Path) -> tuple[dict[str, Path], list[Import], list[str]]:
    """The package's modules, their imports, and the modules no layer covers."""
    package = root.name
    found_modules = modules(root)
    known = set(found_modules)
    unassigned = sorted(m for m in found_modules if layer_of(m) is None)
    found = [
        imp
        for module, path in found_modules.items()
        if layer_of(module) is not None
        for imp in imports(module, path, known, package)
        if not (imp.internal and imp.target == module)
    ]
    return found_modules, found, unassigned


def report(root: Path, *, graph: bool, out: list[str], sandbox: Path | None = None) -> int:
    found_modules, found, unassigned = analyse(root)
    violations = check(found)
    outside: list[Outside] = []
    per_layer: dict[str, int] = defaultdict(int)
    layer_edges: dict[tuple[str, str], int] = defaultdict(int)
    outside_edges: dict[str, set[str]] = defaultdict(set)
    if sandbox is not None:
        layer, sandbox_modules, outside = analyse_outside(sandbox, set(found_modules))
        per_layer[layer.name] = len(sandbox_modules)
        for imp in outside:
            target = layer_of(imp.imp.target)
            assert target is not None
            layer_edges[(layer.name, target.name)] += 1
            outside_edges[module_path(imp.imp.source, layer.package)].add(module_path(imp.imp.target))
        for module in sandbox_modules:
            outside_edges[module_path(module, layer.package)]
    for module in found_modules:
        layer = layer_of(module)
        per_layer[layer.name if layer else "?"] += 1
    internal = [imp for imp in found if imp.internal]
    edges = {(imp.source, imp.target) for imp in internal}
    for source, target in edges:
        a, b = layer_of(source), layer_of(target)
        assert a is not None and b is not None
        if a is not b:
            layer_edges[(a.name, b.name)] += 1
    out.append(f"{len(found_modules)} modules, {len(edges)} import edges inside the package")
    for layer in LAYERS:
        uses = sorted({b for (a, b) in layer_edges if a == layer.name}, key=_rank)
        pure = "pure" if layer.pure else "I/O "
        out.append(
            f"  tier {layer.tier} {layer.name:<12} {pure} {per_layer.get(layer.name, 0):>3} modules"
            f"  -> {', '.join(uses) or '-'}"
        )
    if graph:
        out.append("")
        for module in sorted(found_modules):
            targets = sorted({module_path(t) for s, t in edges if s == module})
            out.append(f"{module_path(module)} -> {', '.join(targets) or '-'}")
        for name, targets_of in sorted(outside_edges.items()):
            out.append(f"{name} -> {', '.join(sorted(targets_of)) or '-'}")
    problems = [
        f"{module_path(m)}: in no declared layer (add it to LAYERS in hack/layers.py)" for m in unassigned
    ]
    problems += [str(v) for v in sorted(violations, key=lambda v: (v.imp.source, v.imp.line))]
    problems += [str(o) for o in outside if not o.ok()]
    if problems:
        out.append("")
        out.append(f"{len(problems)} layering violation(s):")
        out.extend(f"  {problem}" for problem in problems)
        return 1
    out.append("no back-edges: imports point down the layers only")
    return 0


def _rank(name: str) -> tuple[int, str]:
    layer = next(layer for layer in LAYERS if layer.name == name)
    return (layer.tier, name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--graph", action="store_true", help="also print every module's imports")
    parser.add_argument("--root", type=Path, default=ROOT, help="the package (default: %(default)s)")
    parser.add_argument(
        "--sandbox", type=Path, default=SANDBOX_ROOT, help="the sandbox's package (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    out: list[str] = []
    status = report(args.root, graph=args.graph, out=out, sandbox=args.sandbox)
    print("\n".join(out))
    return status


if __name__ == "__main__":
    sys.exit(main())
