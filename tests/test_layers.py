"""The shape of the package, held by its imports: the two front ends are siblings that never
import each other, the core knows no transport, and LocalAuthServer imports nothing of the
client (CONTRIBUTING's map of the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "refreshing_session"
REQUESTS_FRONT_END = ("session", "adapter")
HTTPX_FRONT_END = ("httpx",)
# The core: what every front end stands on. It may use the AS client (refreshers.py and below,
# which use requests for the token endpoint), never a transport of its own.
CORE = ("options", "urls", "credentials", "flow", "async_flow", "keeper", "guard", "shadowed")


def imports_of(module: str) -> set[str]:
    """The package modules (``keeper``, ``testing.server``, ...) and the top-level packages
    (``requests``, ``httpx``, ...) that ``module`` imports, lazily or not."""
    path = PACKAGE / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level > 0:
                base = module.split(".")[: -node.level] if "." in module else []
                name = ".".join([*base, node.module] if node.module else base)
                found.update(
                    [name] if node.module else [f"{name}.{a.name}".strip(".") for a in node.names]
                )
    return found


@pytest.mark.parametrize("module", REQUESTS_FRONT_END)
def test_the_requests_front_end_never_imports_the_httpx_one(module: str) -> None:
    assert not imports_of(module) & {*HTTPX_FRONT_END, "httpx"}


@pytest.mark.parametrize("module", HTTPX_FRONT_END)
def test_the_httpx_front_end_never_imports_the_requests_one(module: str) -> None:
    assert not imports_of(module) & {*REQUESTS_FRONT_END, "requests"}


@pytest.mark.parametrize("module", CORE)
def test_the_core_knows_no_transport_and_no_front_end(module: str) -> None:
    banned = {"requests", "httpx", "urllib3", *REQUESTS_FRONT_END, *HTTPX_FRONT_END}
    assert not imports_of(module) & banned, f"{module}.py imports {imports_of(module) & banned}"


def test_the_local_server_imports_nothing_of_the_client() -> None:
    client = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    for path in (PACKAGE / "testing").glob("*.py"):
        if path.stem in ("__init__", "memory_store"):
            continue  # MemoryStore is a TokenStore: the client's interface is its point
        module = f"testing.{path.stem}"
        assert not imports_of(module) & client, f"{module} imports {imports_of(module) & client}"


def test_each_default_port_and_url_rule_is_written_once() -> None:
    # (testing/ has its own: the server side imports nothing of the client.)
    sources = {path.name: path.read_text() for path in PACKAGE.glob("*.py")}
    writers = [name for name, text in sources.items() if '"https": 443' in text]
    assert writers == ["urls.py"], f"the default ports are written in {writers}"
    definers = [name for name, text in sources.items() if "def check_endpoint_url" in text]
    assert definers == ["urls.py"]
