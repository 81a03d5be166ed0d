"""The package's shape stays easy to change: no import circle inside `bridgedfast/` (lazy,
function-level imports included), no class longer than 250 lines, no function longer than 100.

Run as a script (`python tests/test_layout.py`) to print the measurements: lines, the longest
class and function, and any circles."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bridgedfast"
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 100


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(current: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: dict[str, Path]) -> list[str]:
    """The package modules an import statement reaches (submodules named in `from X import name` included)."""
    targets: list[str] = []
    if isinstance(node, ast.Import):
        bases = [a.name for a in node.names]
        names: list[str] = []
    else:
        if node.level:
            package = current if is_package else current.rsplit(".", 1)[0]
            for _ in range(node.level - 1):
                package = package.rsplit(".", 1)[0]
            base = f"{package}.{node.module}" if node.module else package
        else:
            base = node.module or ""
        bases = [base]
        names = [a.name for a in node.names]
    for base in bases:
        submodules = [f"{base}.{name}" for name in names if f"{base}.{name}" in known]
        targets += submodules
        # `from pkg import submodule` needs only the submodule; any other name comes from pkg itself.
        if base in known and len(submodules) < max(1, len(names)):
            targets.append(base)
    return [t for t in targets if t.split(".")[0] == PACKAGE.name]


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its file (top level or inside functions)."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_resolve(name, path.name == "__init__.py", node, known))
        edges.discard(name)
        graph[name] = edges
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(circles)


def definitions(root: Path = PACKAGE) -> list[tuple[str, str, int]]:
    """(kind 'class'|'function', qualified name, lines) for every class and function (methods and
    nested functions included)."""
    out = []
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text(), str(path))

        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    kind = "class" if isinstance(child, ast.ClassDef) else "function"
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    out.append((kind, f"{prefix}.{child.name}", child.end_lineno - first + 1))
                    walk(child, f"{prefix}.{child.name}")
                else:
                    walk(child, prefix)

        walk(tree, name)
    return out


def test_no_import_circle_inside_the_package():
    circles = import_circles(import_graph())
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_graph_sees_lazy_imports(tmp_path):
    # A circle made only of imports inside functions still counts.
    pkg = tmp_path / "bridgedfast"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def g():\n    from .. import a\n")
    assert import_circles(import_graph(pkg)) == [["bridgedfast.a", "bridgedfast.sub.b"]]


def test_no_oversized_class_or_function():
    too_long = [f"{kind} {name}: {n} lines" for kind, name, n in definitions()
                if n > (MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES)]
    assert too_long == [], "; ".join(too_long)


def main() -> int:
    files = modules()
    lines = sum(len(p.read_text().splitlines()) for p in files.values())
    defs = definitions()
    print(f"bridgedfast/: {len(files)} modules, {lines} lines")
    for kind in ("class", "function"):
        ranked = sorted((d for d in defs if d[0] == kind), key=lambda d: -d[2])[:5]
        print(f"longest {kind}es:" if kind == "class" else f"longest {kind}s:")
        for _, name, n in ranked:
            print(f"  {n:4d}  {name}")
    circles = import_circles(import_graph())
    print(f"import circles: {len(circles)}")
    for c in circles:
        print("  " + " <-> ".join(c))
    return 0


if __name__ == "__main__":
    sys.exit(main())
