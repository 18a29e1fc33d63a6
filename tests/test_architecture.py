"""The house's rules over the import graph: vrthinker never imports dqa, and no module imports itself in a loop.

Every import counts, the ones inside functions too: a lazy import is still a dependency, and a loop of lazy
imports is how registration-by-side-effect hides a cycle.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> folder: the benchmarks' code lives in eval/ but installs as vrthinker_eval (no top-level `eval`)
PACKAGES = {"vrthinker": "vrthinker", "dqa": "dqa", "vrthinker_eval": "eval", "judge_prompts": "judge_prompts"}
# (importer package, imported package): dqa sits above vrthinker, never the reverse
FORBIDDEN = (("vrthinker", "dqa"), ("vrthinker_eval", "dqa"))


def module_names(root: Path, packages=PACKAGES) -> dict[str, Path]:
    out = {}
    folders = packages if isinstance(packages, dict) else {p: p for p in packages}
    for pkg, folder in folders.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [pkg] + list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (module level and inside functions)."""
    modules = module_names(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in modules}

    def resolve(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    src = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            for t in targets:
                hit = resolve(t)
                if hit and hit != mod:
                    graph[mod].add(hit)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def forbidden_edges(graph: dict[str, set[str]], rules=FORBIDDEN) -> list[tuple[str, str]]:
    top = lambda m: m.split(".")[0]
    return sorted((a, b) for a, deps in graph.items() for b in deps if (top(a), top(b)) in rules)


def test_vrthinker_never_imports_dqa():
    assert forbidden_edges(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_check_fails_on_a_back_import(tmp_path):
    """The checker itself: a planted back-import and a planted loop are both caught."""
    (tmp_path / "vrthinker").mkdir()
    (tmp_path / "dqa").mkdir()
    (tmp_path / "vrthinker" / "__init__.py").write_text("")
    (tmp_path / "vrthinker" / "a.py").write_text("def f():\n    from dqa import b\n")
    (tmp_path / "dqa" / "__init__.py").write_text("")
    (tmp_path / "dqa" / "b.py").write_text("from .c import x\n")
    (tmp_path / "dqa" / "c.py").write_text("import vrthinker.a\nfrom . import b\n")
    graph = import_graph(tmp_path, ("vrthinker", "dqa"))
    assert forbidden_edges(graph) == [("vrthinker.a", "dqa.b")]
    assert cycles(graph) == [["dqa.b", "dqa.c", "vrthinker.a"]]


def test_every_package_folder_is_installed():
    """pyproject lists packages by name (eval/ installs as vrthinker_eval): a new folder missing there would be
    importable from a checkout and absent from every install."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {m for m, path in module_names(ROOT).items() if path.name == "__init__.py"}
    assert found == listed
    assert cfg["package-dir"] == {"vrthinker_eval": "eval"}


if __name__ == "__main__":  # `python tests/test_architecture.py` prints today's violations
    g = import_graph()
    print("modules:", len(g), "edges:", sum(map(len, g.values())))
    for c in cycles(g):
        print("cycle:", " <-> ".join(c))
    for a, b in forbidden_edges(g):
        print("forbidden:", a, "->", b)
    sys.exit(1 if cycles(g) or forbidden_edges(g) else 0)
