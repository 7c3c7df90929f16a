"""The two suites of the drop-in proof: which sdist, which test tools, which tests, which plugin
swaps the classes, and the deviations that are ours by design."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The version of every tool is pinned so that a stock failure means the same thing from run to
# run; a new release of a tool can only move both runs alike.
_PYTEST = ("pytest==8.3.4", "pytest-timeout==2.4.0")

# A test file builds a client if it names one of the classes or the top-level functions that
# build one (httpx.get and its siblings).
_BUILDS_A_CLIENT = re.compile(
    r"httpx\.(Async)?Client\b|httpx\.(request|stream|get|options|head|post|put|patch|delete)\("
)


@dataclass(frozen=True)
class Suite:
    """A dependency's own test suite, run stock and with our classes swapped in.

    ``requirement`` is the dependency pinned (its sdist holds the tests); ``tools`` what its
    tests need, pinned; ``plugin`` the module of :mod:`benchmarks.dropin.swaps` that swaps the
    classes; ``extra`` the extra of this checkout that the swap needs; ``source``
    the folder of the unpacked sdist that holds the dependency's code, removed so that the
    tests import the installed copy; ``select`` picks the test paths from the unpacked sdist;
    ``serial`` says whether the two runs must not overlap (fixed ports); ``by_design`` maps
    the node id of a test that is meant to fail with our class to the reason.
    """

    name: str
    requirement: str
    tools: tuple[str, ...]
    plugin: str
    source: str
    select: Callable[[Path], list[str]]
    extra: str | None = None
    pytest_args: tuple[str, ...] = ()
    serial: bool = False
    by_design: Mapping[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The pinned version of the dependency."""
        return self.requirement.partition("==")[2]


def _httpx_tests(root: Path) -> list[str]:
    """tests/client, and every other test file that builds a client."""
    others = sorted(
        path.relative_to(root).as_posix()
        for path in (root / "tests").glob("test_*.py")
        if _BUILDS_A_CLIENT.search(path.read_text(encoding="utf-8"))
    )
    return ["tests/client", *others]


def _requests_tests(root: Path) -> list[str]:
    """All of requests' tests (its own testpaths)."""
    return ["tests"]


HTTPX = Suite(
    name="httpx",
    requirement="httpx==0.28.1",
    # httpx's own requirements.txt at the 0.28.1 tag: its extras and its pinned test tools.
    tools=(
        "httpx[brotli,cli,http2,socks,zstd]==0.28.1",
        "chardet==5.2.0",
        "cryptography==44.0.0",
        "trio==0.27.0",
        "trustme==1.2.0",
        "uvicorn==0.32.1",
        *_PYTEST,
    ),
    plugin="httpx_clients",
    source="httpx",
    select=_httpx_tests,
    extra="httpx",
    # Offline: the two tests that need the internet are marked.
    pytest_args=("-m", "not network"),
    # Its test server listens on the fixed port 8000.
    serial=True,
)

REQUESTS = Suite(
    name="requests",
    requirement="requests==2.34.2",
    # requests' own requirements-dev.txt, each tool at a version its range there allows.
    tools=(
        "requests[socks]==2.34.2",
        "pytest-httpbin==2.1.0",
        "httpbin==0.10.4",
        "trustme==1.2.0",
        *_PYTEST,
    ),
    plugin="requests_session",
    source="src",
    select=_requests_tests,
    by_design={
        "tests/test_requests.py::TestRequests::test_transport_adapter_ordering": (
            "a new session's adapters are requests' two plus ours, mounted on the prefix (with "
            "and without its default port), as the session's docstring says; the test asserts "
            "that a new session holds exactly requests' two"
        ),
    },
)

SUITES = (HTTPX, REQUESTS)
