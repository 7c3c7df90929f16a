"""Every public name has a docstring, and help(refreshing_session) shows them."""

from __future__ import annotations

import configparser
import importlib.util
import inspect
import pydoc
import re
from pathlib import Path
from types import ModuleType

import pytest

import refreshing_session
from refreshing_session.redis_store import RedisTokenStore

PUBLIC = sorted(refreshing_session.__all__)
# Methods a user calls without naming them; other dunders are documented by their class.
CALLED_WITHOUT_A_NAME = ("__call__",)


def own_docstring(member: object) -> str:
    """The docstring written for ``member`` itself, not one it inherits or a generated one."""
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if inspect.isclass(member):
        return str(vars(member).get("__doc__") or "")
    return str(getattr(member, "__doc__", None) or "")


def public_members(cls: type) -> list[tuple[str, object]]:
    """The public methods and properties ``cls`` and its bases in this package define."""
    members = []
    for owner in cls.__mro__:
        if not owner.__module__.startswith("refreshing_session"):
            continue
        for name, member in vars(owner).items():
            public = not name.startswith("_") or name in CALLED_WITHOUT_A_NAME
            if public and (callable(member) or isinstance(member, property)):
                members.append((f"{owner.__name__}.{name}", member))
    return members


@pytest.mark.parametrize("name", PUBLIC)
def test_each_exported_name_and_its_public_methods_have_a_docstring(name: str) -> None:
    exported = getattr(refreshing_session, name)
    assert own_docstring(exported).strip(), f"{name} has no docstring"
    if inspect.isclass(exported):
        undocumented = [
            member_name
            for member_name, member in public_members(exported)
            if not own_docstring(member).strip()
        ]
        assert undocumented == []


def test_help_on_the_package_shows_every_exported_name_with_its_summary() -> None:
    text = pydoc.plain(pydoc.render_doc(refreshing_session))
    assert "RefreshingSession(" in text.split("CLASSES")[0]  # the package's own example
    for name in PUBLIC:
        summary = own_docstring(getattr(refreshing_session, name)).strip().splitlines()[0]
        exported = getattr(refreshing_session, name)
        assert f"{'class ' if inspect.isclass(exported) else ''}{name}" in text
        assert summary.strip() in text


def test_the_redis_store_is_documented_without_being_imported_by_a_star() -> None:
    """It needs the optional redis package, so ``from refreshing_session import *`` must not
    import it; it is reached by name, and the package's help says where."""
    assert "RedisTokenStore" not in refreshing_session.__all__
    store = refreshing_session.RedisTokenStore
    assert store is RedisTokenStore
    assert own_docstring(store).strip()
    assert all(own_docstring(member).strip() for _, member in public_members(store))
    assert "RedisTokenStore" in (refreshing_session.__doc__ or "")


# --- the README and the documentation site --------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_the_readme_is_short_enough_to_read_to_the_end() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the detail into docs/"


def test_every_relative_link_in_the_readme_resolves() -> None:
    targets = [
        link
        for link in MARKDOWN_LINK.findall(README.read_text())
        if "://" not in link and not link.startswith("#")
    ]
    assert targets, "the README links into the documentation"
    broken = [link for link in targets if not (ROOT / link.split("#")[0]).exists()]
    assert broken == []


def test_the_readme_keeps_the_two_fresh_machine_commands() -> None:
    text = README.read_text()
    assert "pip install . && refreshing-session demo" in text
    assert 'pip install -e ".[test]" && pytest' in text


def test_the_readme_quickstart_is_the_tested_example() -> None:
    blocks = [code for language, code in FENCED.findall(README.read_text()) if language == "python"]
    assert blocks == [(EXAMPLES / "quickstart.py").read_text()]


# A block that mirrors a file under examples/ is marked by the comment just before its fence.
MIRROR = re.compile(r"^<!-- example: (\S+) -->\n```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Sphinx directives that a code host shows as their bare source instead of the code they pull in.
DIRECTIVE = re.compile(
    r"^```\{(literalinclude|eval-rst|include|automodule|autoclass)\}", re.MULTILINE
)
GENERATED = DOCS / "reference" / "api.md"  # its signatures are checked against the code below


def site_pages() -> list[Path]:
    return sorted(page for page in DOCS.rglob("*.md") if "_build" not in page.parts)


def test_the_pages_pull_no_code_in_with_a_directive_a_code_host_cannot_render() -> None:
    pulling = [
        f"{page.relative_to(ROOT)}: {match.group(1)}"
        for page in site_pages()
        for match in DIRECTIVE.finditer(page.read_text())
    ]
    assert pulling == [], "paste the code as a fenced block marked <!-- example: examples/... -->"


def test_every_block_that_mirrors_an_example_is_identical_to_it() -> None:
    mirrors = [
        (page.relative_to(ROOT), path, code)
        for page in site_pages()
        for path, _, code in MIRROR.findall(page.read_text())
    ]
    assert len(mirrors) >= 20, "the site shows the examples"
    missing = [f"{page}: {path}" for page, path, _ in mirrors if not (ROOT / path).is_file()]
    assert missing == [], "a marked block names a file that does not exist"
    differ = [
        f"{page}: {path}" for page, path, code in mirrors if (ROOT / path).read_text() != code
    ]
    assert differ == [], (
        "copy the example's current text into the page (the file is the tested one)"
    )


@pytest.mark.parametrize(
    "page", [page.relative_to(DOCS) for page in site_pages() if page != GENERATED], ids=str
)
def test_the_site_shows_code_only_from_files_under_examples(page: Path) -> None:
    text = (DOCS / page).read_text()
    marked = [code for _, language, code in MIRROR.findall(text) if language == "python"]
    python = [code for language, code in FENCED.findall(text) if language == "python"]
    unmarked = [code.splitlines()[0] for code in python if code not in marked]
    assert unmarked == [], (
        "Python code on the site is a file under examples/ (run by tests/test_examples.py), "
        "pasted as a fenced block marked <!-- example: examples/NAME.py --> on the line before it"
    )


def test_every_example_is_run_by_a_test() -> None:
    runner = (ROOT / "tests" / "test_examples.py").read_text()
    examples = [
        path.relative_to(EXAMPLES).as_posix()
        for path in EXAMPLES.rglob("*")
        if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts
    ]
    named = [name for name in examples if name in runner or Path(name).name in runner]
    # The pytest plugin's example folder runs as a whole.
    unnamed = [
        name for name in examples if name not in named and not name.startswith("pytest_plugin/")
    ]
    assert unnamed == []


@pytest.mark.parametrize(
    ("page", "section"),
    [("reports/reliability.md", "reliability"), ("reports/performance.md", "performance")],
)
def test_the_report_pages_have_the_sections_their_generators_write(page: str, section: str) -> None:
    text = (DOCS / page).read_text()
    assert f"<!-- {section}:begin -->" in text
    assert f"<!-- {section}:end -->" in text


# --- the API reference, generated by docs/gen_api.py ----------------------------------------------


def api_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api", DOCS / "gen_api.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_api_reference_is_a_fresh_generation() -> None:
    fresh = api_generator().page()
    assert GENERATED.read_text() == fresh, (
        "docs/reference/api.md differs from the code's signatures and docstrings: "
        "run python docs/gen_api.py and commit the page"
    )


def test_the_api_reference_documents_every_public_name() -> None:
    import refreshing_session.httpx
    import refreshing_session.testing

    public = [
        *refreshing_session.__all__,
        *refreshing_session.httpx.__all__,
        *refreshing_session.testing.__all__,
        "RedisTokenStore",
        "OAuthClient",
        "DeviceLogin",
        "BrowserLogin",
    ]
    headings = set(re.findall(r"^### `(\w+)`$", GENERATED.read_text(), re.MULTILINE))
    assert sorted(set(public) - headings) == [], "add the module to PUBLIC in docs/gen_api.py"


# --- install commands that work from a checkout ---------------------------------------------------

# The package is not on PyPI yet: `pip install "refreshing-session[httpx]"` fails with "No matching
# distribution found". The index form may appear only where it says so ("once ... on PyPI").
INDEX_FORM = re.compile(r"refreshing-session\[\w+\]")
PYPI_SAID = re.compile(r"PyPI[^.]{0,120}$")


def install_texts() -> list[str]:
    files = [
        README,
        ROOT / "CONTRIBUTING.md",
        *site_pages(),
        *sorted(DOCS.glob("*.py")),
        *sorted(EXAMPLES.rglob("*.py")),
        *sorted((ROOT / "refreshing_session").rglob("*.py")),
    ]
    return [path.relative_to(ROOT).as_posix() for path in files]


@pytest.mark.parametrize(
    "name",
    install_texts(),
)
def test_install_commands_are_the_ones_that_work_from_a_checkout(name: str) -> None:
    text = (ROOT / name).read_text()
    unmarked = [
        text[max(0, match.start() - 60) : match.end()].replace("\n", " ")
        for match in INDEX_FORM.finditer(text)
        if not PYPI_SAID.search(text[max(0, match.start() - 140) : match.start()])
    ]
    assert unmarked == [], (
        'say pip install ".[extra]" from a checkout; the index form only after "once released '
        'on PyPI"'
    )


# --- the documentation host ---------------------------------------------------------------------

SITE = "https://refreshing-session.readthedocs.io/"
SPHINX_BUILD = re.compile(r"sphinx-build [^`\n]*docs/_build/html")


def test_the_documentation_host_builds_the_site_as_ci_does() -> None:
    path = ROOT / ".readthedocs.yaml"
    if not path.exists():
        assert (ROOT / "PKG-INFO").exists(), "a checkout has .readthedocs.yaml"
        pytest.skip("the unpacked sdist carries no .readthedocs.yaml (nor .ci/)")
    config = path.read_text()
    for line in (
        "version: 2",
        'python: "3.11"',
        "configuration: docs/conf.py",
        "fail_on_warning: true",
        "path: .",
        "- docs",
    ):
        assert re.search(rf"^\s*{re.escape(line)}\s*$", config, re.MULTILINE), f"no {line!r}"
    assert re.search(r"^build:\n\s+os: \S+", config, re.MULTILINE), "build.os is required"


def test_the_site_url_is_in_the_readme_and_the_package_metadata() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    urls = dict(
        line.split(" = ", 1) for line in setup["metadata"]["project_urls"].strip().splitlines()
    )
    assert urls["Documentation"] == SITE
    assert SITE in README.read_text()


def test_the_readme_and_contributing_build_the_docs_as_ci_does() -> None:
    sources = [ROOT / ".ci" / "run", README, ROOT / "CONTRIBUTING.md"]
    # The sdist carries no .ci/: there the README and CONTRIBUTING are held to each other.
    commands = {
        path.name: SPHINX_BUILD.findall(path.read_text()) for path in sources if path.exists()
    }
    assert all(found for found in commands.values()), commands
    assert len({command for found in commands.values() for command in found}) == 1, commands
