"""The layering that docs/architecture.md draws: no import circle anywhere in ``marl/`` and
``envs/`` (function-level imports included), and ``envs`` never imports ``marl``."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module(p): p for d in ("marl", "envs") for p in (ROOT / d).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name
                            and not name.startswith(t + ".")}  # a package's own parent
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_and_envs_stands_alone():
    graph = import_graph()
    assert "marl.runs" in graph and "marl.rollout" in graph  # the graph was read
    assert circles(graph) == []
    assert not {t for m, ts in graph.items() if m.startswith("envs") for t in ts
                if t.startswith("marl")}
    # training and evaluation stand on the run folder, not on each other
    assert "marl.evaluate" not in graph["marl.train"]
    assert "marl.train" not in graph["marl.evaluate"]


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def long_functions_without_reason(source: str, limit: int = 60) -> list[str]:
    """Functions longer than ``limit`` lines whose body does not say why in a ``# Long on
    purpose:`` comment within its first lines."""
    lines = source.split("\n")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.end_lineno - node.lineno > limit:
            head = "\n".join(lines[node.lineno:node.body[0].end_lineno + 3])
            if "# Long on purpose:" not in head:
                found.append(f"{node.name} ({node.end_lineno - node.lineno} lines)")
    return found


def test_long_functions_say_why():
    offenders = []
    for path in sorted([*ROOT.glob("marl/**/*.py"), *ROOT.glob("envs/**/*.py")]):
        offenders += [f"{path.relative_to(ROOT)}: {name}"
                      for name in long_functions_without_reason(path.read_text())]
    assert not offenders, offenders


def test_the_length_check_finds_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    assert long_functions_without_reason(f"def f():\n{body}\n") == ["f (70 lines)"]
    reason = "    # Long on purpose: a table.\n"
    assert long_functions_without_reason(f"def f():\n{reason}{body}\n") == []
