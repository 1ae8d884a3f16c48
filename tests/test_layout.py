"""The architecture, as the imports show it: no cycles; the store contract imports nothing of
HTTP or of a backend; each backend imports the contract and nothing of the other backend or of
HTTP; modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "storage_server"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports (anywhere in it, TYPE_CHECKING blocks and functions too),
    absolute names; `from x import y` counts y when it is a module of the package."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {i for i in imports(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def test_the_package_has_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def external(module: str) -> set[str]:
    return {i.split(".")[0] for i in imports(MODULES[module])}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("storage_server.store")))
def test_the_store_contract_imports_nothing_of_http_or_of_a_backend(module: str) -> None:
    inside = {i for i in GRAPH[module] if not i.startswith("storage_server.store")}
    assert inside == set()
    assert not external(module) & {"tornado", "botocore", "prometheus_client"}


BACKENDS = {
    "fs": ("storage_server.blobfs", "storage_server.fs"),
    "s3": ("storage_server.s3",),
}


def within(module: str, packages: tuple[str, ...]) -> bool:
    """Whether `module` is one of `packages` or inside one (storage_server.s3api is not in .s3)."""
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_backend_imports_the_contract_and_nothing_of_http_or_of_another_backend(backend: str) -> None:
    own = BACKENDS[backend]
    allowed = (*own, "storage_server.store", "storage_server.settings")
    for module in (m for m in MODULES if within(m, own)):
        strays = {i for i in GRAPH[module] if not within(i, allowed) and i != "storage_server"}
        assert strays == set(), module
        assert "tornado" not in external(module), module


FRONT_DOORS = ("storage_server.handlers", "storage_server.native", "storage_server.s3api")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, FRONT_DOORS)))
def test_a_front_door_knows_no_backend(module: str) -> None:
    backends = (*tuple(p for packages in BACKENDS.values() for p in packages), "storage_server.backends")
    assert {i for i in GRAPH[module] if within(i, backends)} == set()
    assert "botocore" not in external(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_under_the_size_limit(module: str) -> None:
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES
