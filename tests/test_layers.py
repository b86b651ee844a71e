"""The package's layering, read from its own imports (ast): every srx4 import points
down the layers of ARCHITECTURE.md, never up or sideways, and no module imports
itself back through another (no cycles)."""
import ast

from conftest import REPO

SRC = REPO / "src"

PACKAGE = REPO / "src" / "srx4"
# a package may import the ones of a lower rank; one rank = one level (data and models
# are side by side and know nothing of each other)
RANK = {"core": 0, "image": 1, "data": 2, "models": 2, "predict": 3, "submit": 3, "runs": 4, "train": 5,
        "commands": 6}


def modules():
    """{module name: set of srx4 modules it imports (anywhere in the file)}."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("srx4"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("srx4"))
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_lives_in_a_layer():
    loose = [m for m in modules() if m != "srx4" and layer(m) not in RANK]
    assert not loose, f"modules outside the layers {sorted(RANK)}: {loose}"


def test_imports_point_down_the_layers():
    upward = []
    for module, deps in modules().items():
        for dep in deps:
            a, b = layer(module), layer(dep)
            if a and b and a != b and RANK[b] >= RANK[a]:
                upward.append(f"{module} -> {dep}")
    assert not upward, "imports that climb or cross layers:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = modules()
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_rule_is_not_vacuous():
    graph = modules()
    assert len(graph) >= 40 and sum(len(d) for d in graph.values()) >= 80
    assert "srx4.core.io" in graph["srx4.models.weights"] and "srx4.image.codec" in graph["srx4.data.cache"]


def test_the_package_finds_the_repo_from_its_folder():
    from srx4.core import paths
    assert paths.REPO == REPO and (paths.REPO / "README.md").is_file()


def test_run_folder_names_are_spelt_once():
    """core/layout.py holds every file name of a run folder; no module gives one a second
    name (`NAME = layout.X`) or spells a name out as a literal of its own."""
    import re
    names = [line.split(" = ")[1].strip('"') for line in (SRC / "srx4/core/layout.py").read_text().splitlines()
             if re.match(r'^[A-Z_]+ = "[^"{]+"$', line)]
    assert "best.safetensors" in names and "last.ckpt" in names
    for path in list(SRC.rglob("*.py")):
        if path.name == "layout.py":
            continue
        text = path.read_text()
        assert not re.search(r"^\w+ = layout\.\w+", text, re.M), f"{path}: re-exports a layout name"
        for name in ("best.safetensors", "last.ckpt", "summary.json", "split.json", "hygiene.json", "plan.json",
                     "last_run.json", ".srx4-weights.json"):
            code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
            assert f'"{name}"' not in code and f"'{name}'" not in code, f"{path}: spells {name} itself"
