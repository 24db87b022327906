"""ARCHITECTURE.md stays true: every module of pipe/ is described there, imports only what its paragraph allows,
imports run one way (no cycle), each module with logic has its own tests/test_<module>.py, and no function
runs past a screen."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
MODULES = {path.stem: path for path in (ROOT / "pipe").glob("*.py") if path.stem != "__init__"}
DOCUMENT = (ROOT / "ARCHITECTURE.md").read_text()
_SECTION = re.compile(r"^#### `pipe/(?P<module>\w+)\.py`\n(?P<body>.*?)(?=^#|\Z)", re.M | re.S)


def allowed() -> dict[str, set[str]]:
    """Each module's paragraph in ARCHITECTURE.md, and the modules its '*May import:*' line names."""
    sections = {}
    for section in _SECTION.finditer(DOCUMENT):
        line = re.search(r"\*May import:\* (.*?)\.\n", section["body"], re.S)
        assert line, f"ARCHITECTURE.md: pipe/{section['module']}.py has no '*May import:*' line"
        sections[section["module"]] = set(re.findall(r"`(\w+)`", line[1]))
    return sections


def imports(path: Path) -> set[str]:
    """The pipe modules a module imports (`from pipe import x`, `from pipe.x import y`, `import pipe.x`), lazy ones too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "pipe":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipe."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("pipe.")}
    return found


def test_every_module_is_described_once_and_nothing_else_is():
    described = [section["module"] for section in _SECTION.finditer(DOCUMENT)]
    assert sorted(described) == sorted(set(described)), "a module is described twice"
    assert set(described) == set(MODULES)


def test_each_module_imports_only_what_its_paragraph_allows():
    rules = allowed()
    unlisted = {name: sorted(imports(path) - rules[name]) for name, path in MODULES.items() if imports(path) - rules[name]}
    assert not unlisted, f"imports ARCHITECTURE.md does not allow (add them there, or remove them): {unlisted}"


def test_the_paragraphs_allow_only_modules_that_exist_and_are_imported():
    """A permission nobody uses is a stale rule: the document says what the code does."""
    rules = allowed()
    stale = {name: sorted(rules[name] - imports(MODULES[name])) for name in MODULES if rules[name] - imports(MODULES[name])}
    assert not stale, f"ARCHITECTURE.md allows imports the module does not make: {stale}"


def test_imports_run_one_way():
    graph = {name: imports(path) for name, path in MODULES.items()}
    done, path = set(), []

    def visit(name):
        assert name not in path, f"import cycle: {' -> '.join([*path[path.index(name):], name])}"
        if name in done:
            return
        path.append(name)
        for dependency in graph.get(name, ()):
            visit(dependency)
        path.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_each_module_with_logic_has_its_own_tests():
    """`errors` (one exception class) and `__main__` (one call) have no logic of their own to test."""
    untested = sorted(name for name in MODULES if name not in ("errors", "__main__")
                      and not (ROOT / "tests" / f"test_{name}.py").exists())
    assert not untested, f"modules without tests/test_<module>.py: {untested}"


MAX_FUNCTION_LINES = 60  # a function longer than a screen is doing more than one thing


def test_no_function_is_longer_than_a_screen():
    long = [f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for name, path in sorted(MODULES.items()) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"split these: {long}"
