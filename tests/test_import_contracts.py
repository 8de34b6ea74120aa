"""The layering rules, checked on the source: every import statement of the runtime packages,
including those inside functions, parsed with `ast` (the way kopf checks its own layers with
import-linter; import-linter cannot follow the package-dir mapping of this repository).

| rule                                                                 | why                                                          |
| -------------------------------------------------------------------- | ------------------------------------------------------------ |
| llmfleet.operator and llmfleet.router import nothing of the engine   | their image has no torch (a small image)                     |
| operator.api imports nothing else of the operator                    | the models are the bottom layer                              |
| the pure decision modules import only api and each other             | decisions are plain data in, plain data out: table-tested    |
| ... and no client, network or process library                        | without a cluster                                            |
| adapters import no handlers; nothing below the CLI imports the CLI   | I/O edges and kopf glue stay on top                          |
| the engine's scheduler, block manager and sequence import no torch   | their tests run in milliseconds, on any machine              |
| no runtime module imports tools/, benchmarks/, tests or e2e          | those are not installed                                      |

`make lint` runs this file too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "llmfleet.engine": ROOT / "engine" / "llmfleet" / "engine",
    "llmfleet.operator": ROOT / "operator" / "llmfleet" / "operator",
    "llmfleet.router": ROOT / "router" / "llmfleet" / "router",
}

OPERATOR = "llmfleet.operator"
API = f"{OPERATOR}.api"
PURE = tuple(f"{OPERATOR}.{name}" for name in ("scaling", "render", "spot", "status", "cost"))
ADAPTERS = f"{OPERATOR}.adapters"
HANDLERS = f"{OPERATOR}.handlers"
CLI = f"{OPERATOR}.cli"
# What a decision must not reach for: a client, the network, processes, an event loop.
IO_LIBRARIES = ("kopf", "kubernetes", "httpx", "asyncio", "socket", "urllib", "http", "subprocess", "ssl")
TORCH_FREE = ("llmfleet.engine.scheduler", "llmfleet.engine.block_manager", "llmfleet.engine.sequence")
NOT_INSTALLED = ("tools", "benchmarks", "tests", "e2e", "conftest")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str  # file:line, for the failure message

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported}"


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imports_in(module: str, path: Path) -> list[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = modules()
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [Import(module, alias.name, where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the submodule pkg.sub when there is one.
                sub = f"{target}.{alias.name}"
                out.append(Import(module, sub if sub in known else target, where))
    return out


@cache
def all_imports() -> list[Import]:
    return [imp for module, path in sorted(modules().items()) for imp in _imports_in(module, path)]


def _violations(importers: tuple[str, ...], forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        str(imp)
        for imp in all_imports()
        if _within(imp.importer, *importers)
        and _within(imp.imported, *forbidden)
        and not _within(imp.imported, *allowed)
    ]


def test_the_sources_are_found():
    # The rules below mean nothing if the walk finds nothing (a moved folder, say).
    found = modules()
    assert API in found and "llmfleet.engine.scheduler" in found and len(found) > 50


def test_the_operator_and_router_import_nothing_of_the_engine():
    assert _violations((OPERATOR, "llmfleet.router"), ("llmfleet.engine", "torch")) == []


def test_api_is_the_bottom_layer():
    assert _violations((API,), (OPERATOR,), allowed=(API,)) == []
    assert _violations((API,), IO_LIBRARIES) == []


def test_pure_decisions_import_only_api_and_each_other():
    assert _violations(PURE, (OPERATOR,), allowed=(API, *PURE)) == []


def test_pure_decisions_use_no_client_network_or_process_library():
    assert _violations(PURE, IO_LIBRARIES) == []


def test_adapters_and_handlers_stay_on_top():
    assert _violations((ADAPTERS,), (HANDLERS, CLI)) == []
    assert _violations((API, *PURE, ADAPTERS, HANDLERS), (CLI,)) == []


def test_the_engine_imports_nothing_of_the_operator_or_router():
    assert _violations(("llmfleet.engine",), (OPERATOR, "llmfleet.router")) == []


def test_no_runtime_module_imports_what_is_not_installed():
    assert _violations(tuple(SOURCES), NOT_INSTALLED) == []


def _engine_closure(start: str) -> dict[str, Import | None]:
    """Every engine module `start` reaches through imports, with the import that reached it."""
    seen: dict[str, Import | None] = {start: None}
    todo = [start]
    while todo:
        module = todo.pop()
        for imp in all_imports():
            if imp.importer == module and imp.imported in modules() and imp.imported not in seen:
                seen[imp.imported] = imp
                todo.append(imp.imported)
    return seen


@pytest.mark.parametrize("module", TORCH_FREE)
def test_scheduling_modules_import_no_torch(module):
    reached = _engine_closure(module)
    found = [str(imp) for imp in all_imports() if imp.importer in reached and _within(imp.imported, "torch")]
    assert found == [], f"{module} reaches torch through {sorted(reached)}"


def test_scheduling_modules_load_without_torch():
    # The same rule, as Python sees it: importing them leaves torch unloaded.
    code = f"import sys, {', '.join(TORCH_FREE)}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
