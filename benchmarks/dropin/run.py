"""The drop-in runner: prepare each suite, run it stock and swapped, compare, print.

python -m benchmarks.dropin [--work DIR] [--page docs/reports/dropin.md] [--suite NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .page import write_page
from .suites import SUITES, Suite

CHECKOUT = Path(__file__).resolve().parents[2]
# The folder that holds the swaps package: the runs import its plugins from there.
PLUGINS = Path(__file__).resolve().parent
# One test that hangs fails alone, named; a whole run that hangs ends the runner.
TEST_TIMEOUT = 120
RUN_TIMEOUT = 1200
MODES = ("stock", "swapped")
# What building the wheel needs, beside the package.
WHEEL_SOURCES = ("pyproject.toml", "setup.cfg", "README.md", "LICENSE", "MANIFEST.in")


class RunnerError(RuntimeError):
    """A suite could not be prepared or run (not a test failure)."""


@dataclass(frozen=True)
class Prepared:
    """A suite ready to run: its virtualenv's python, the unpacked sdist and the test paths."""

    suite: Suite
    python: Path
    root: Path
    tests: list[str]
    logs: Path


@dataclass(frozen=True)
class Run:
    """One pytest run: every test's outcome (passed, failed or skipped) by node id."""

    outcomes: dict[str, str]

    def having(self, outcome: str) -> set[str]:
        """The node ids of the tests with ``outcome``."""
        return {node for node, seen in self.outcomes.items() if seen == outcome}


@dataclass(frozen=True)
class Comparison:
    """A suite's two runs, and the tests that failed only swapped but not when run again
    (they passed swapped, or failed stock too)."""

    suite: Suite
    stock: Run
    swapped: Run
    flaky: frozenset[str]
    seconds: float

    @property
    def new(self) -> set[str]:
        """Tests that fail swapped (or are missing from that run) but not stock, unless they
        turned out flaky when run again."""
        failing = self.swapped.having("failed") | (
            self.stock.outcomes.keys() - self.swapped.outcomes.keys()
        )
        return failing - self.stock.having("failed") - self.flaky

    @property
    def unexplained(self) -> set[str]:
        """New failures that :attr:`Suite.by_design` does not explain."""
        return self.new - self.suite.by_design.keys()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suites, print the comparison; return 1 if a test fails only swapped (by-design
    deviations aside), else 0."""
    started = time.monotonic()
    arguments = _parse(argv)
    suites = [suite for suite in SUITES if arguments.suite in (None, suite.name)]
    with _work_folder(arguments.work) as work, ThreadPoolExecutor(len(suites)) as pool:
        wheel = _build_wheel(work)
        run = partial(_prepare_and_compare, work=work, wheel=wheel)
        comparisons = list(pool.map(run, suites))
    seconds = time.monotonic() - started
    revision = _revision()
    for comparison in comparisons:
        print(_summary(comparison))
    print(f"{seconds:.0f} s in all, the virtualenvs included; the library at {revision}")
    if arguments.page is not None:
        write_page(arguments.page, comparisons, f"{_command(argv)}` at `{revision}", seconds)
    return 1 if any(comparison.unexplained for comparison in comparisons) else 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dropin", description=__doc__)
    parser.add_argument("--work", type=Path, help="keep the virtualenvs and sdists here")
    parser.add_argument("--page", type=Path, help="rewrite this report page's results")
    parser.add_argument("--suite", choices=[suite.name for suite in SUITES])
    return parser.parse_args(argv)


def _revision() -> str:
    """The commit of the checkout, and whether the library differs from it."""
    head = _git("rev-parse", "--short", "HEAD") or "an unknown commit"
    changed = _git("status", "--porcelain", "refreshing_session")
    return f"{head} with uncommitted changes to refreshing_session/" if changed else head


def _git(*arguments: str) -> str:
    """What git prints for ``arguments`` in the checkout, stripped; empty if it fails."""
    command = ["git", "-C", str(CHECKOUT), *arguments]
    # Our own command; git from the PATH, as the developer's own.
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    return completed.stdout.strip() if completed.returncode == 0 else ""


def _command(argv: Sequence[str] | None) -> str:
    return " ".join(["python -m benchmarks.dropin", *(sys.argv[1:] if argv is None else argv)])


@contextmanager
def _work_folder(given: Path | None) -> Iterator[Path]:
    """``given`` (kept, and reused: a second run skips what the first installed), or a
    temporary folder removed afterwards."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="refreshing-dropin-") as folder:
        yield Path(folder)


def _build_wheel(work: Path) -> Path:
    """A wheel of this checkout, built from a copy of what it needs: pip builds in the source
    folder, and the checkout's is shared with whoever else builds there."""
    source = work / "checkout"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(CHECKOUT / "refreshing_session", source / "refreshing_session")
    for name in WHEEL_SOURCES:
        shutil.copy2(CHECKOUT / name, source / name)
    wheels = work / "wheel"
    shutil.rmtree(wheels, ignore_errors=True)
    _call(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(source),
        ]
    )
    (wheel,) = wheels.glob("*.whl")
    return wheel


def _prepare_and_compare(suite: Suite, work: Path, wheel: Path) -> Comparison:
    return _compare(_prepare(suite, work, wheel))


def _prepare(suite: Suite, work: Path, wheel: Path) -> Prepared:
    """A virtualenv with this checkout and the suite's tools, and the sdist unpacked beside it
    without the dependency's own code (so that its tests import the installed copy)."""
    folder = work / suite.name
    python = folder / "venv" / "bin" / "python"
    if not python.exists():
        _call([sys.executable, "-m", "venv", str(python.parents[1])])
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    this = f"{wheel}[{suite.extra}]" if suite.extra else str(wheel)
    _call([*pip, this, *suite.tools])
    # A kept virtualenv has the wheel of an earlier run, of the same version.
    _call([*pip, "--force-reinstall", "--no-deps", str(wheel)])
    sdist = _download(python, suite, folder)
    root = folder / "src"
    shutil.rmtree(root, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        archive.extractall(root, filter="data")
    (unpacked,) = root.iterdir()
    shutil.rmtree(unpacked / suite.source)
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    return Prepared(suite, python, unpacked, suite.select(unpacked), logs)


def _download(python: Path, suite: Suite, folder: Path) -> Path:
    """The suite's sdist from PyPI: the tests come with it."""
    sdists = folder / "sdist"
    pip = [str(python), "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    _call([*pip, "--dest", str(sdists), suite.requirement])
    (sdist,) = sdists.glob(f"{suite.name}-{suite.version}.tar.gz")
    return sdist


def _call(command: list[str]) -> None:
    # Our own commands: a virtualenv's python, pip and pytest.
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if completed.returncode != 0:
        raise RunnerError(f"{' '.join(command)} failed:\n{completed.stdout}{completed.stderr}")


def _compare(prepared: Prepared) -> Comparison:
    """Run the suite stock and swapped (at once unless it is serial), then run again, alone
    and in both modes, each test that failed only swapped, unexplained: unless it fails swapped
    and passes stock again, it is flaky, not new."""
    started = time.monotonic()
    if prepared.suite.serial:
        stock, swapped = (_pytest(prepared, mode, prepared.tests) for mode in MODES)
    else:
        with ThreadPoolExecutor(len(MODES)) as pool:
            stock, swapped = pool.map(_pytest, [prepared] * 2, MODES, [prepared.tests] * 2)
    suspects = Comparison(prepared.suite, stock, swapped, frozenset(), 0.0).unexplained
    suspects &= swapped.having("failed")  # a test missing from the run cannot be run again
    flaky: frozenset[str] = frozenset()
    if suspects:
        stock_again, swapped_again = (
            _pytest(prepared, mode, sorted(suspects), "again") for mode in MODES
        )
        flaky = frozenset(
            suspects - (swapped_again.having("failed") - stock_again.having("failed"))
        )
    return Comparison(prepared.suite, stock, swapped, flaky, time.monotonic() - started)


def _pytest(prepared: Prepared, mode: str, tests: list[str], label: str = "") -> Run:
    """Run ``tests`` of the suite in ``mode``; its output goes to a log file of its own."""
    name = f"{mode}{'-' + label if label else ''}"
    outcomes = prepared.logs / f"{name}.json"
    outcomes.unlink(missing_ok=True)
    plugins = ["swaps.outcomes"]
    if mode == "swapped":
        plugins += ["swaps.harness", f"swaps.{prepared.suite.plugin}"]
    command = [str(prepared.python), "-m", "pytest", "-p", "no:cacheprovider"]
    command += [part for plugin in plugins for part in ("-p", plugin)]
    command += [f"--timeout={TEST_TIMEOUT}", "-rfE", *prepared.suite.pytest_args, *tests]
    environment = {**os.environ, "PYTHONPATH": str(PLUGINS), "DROPIN_OUTCOMES": str(outcomes)}
    log = prepared.logs / f"{name}.log"
    with log.open("w") as output:
        completed = subprocess.run(  # noqa: S603 (as in _call)
            command,
            cwd=prepared.root,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    # 0: all passed; 1: some failed. Anything else (interrupted, internal or usage error, no
    # tests) is the harness's failure, not the suite's.
    if completed.returncode not in (0, 1) or not outcomes.exists():
        raise RunnerError(
            f"{prepared.suite.name} {name}: pytest exited {completed.returncode} without "
            f"running the tests; see {log}"
        )
    return Run(json.loads(outcomes.read_text()))


def _summary(comparison: Comparison) -> str:
    suite = comparison.suite
    lines = [f"{suite.name} {suite.version} (its runs took {comparison.seconds:.0f} s):"]
    for mode, run in (("stock", comparison.stock), ("swapped", comparison.swapped)):
        counts = ", ".join(f"{len(run.having(outcome))} {outcome}" for outcome in OUTCOMES)
        lines.append(f"  {mode:8} {counts}")
        lines.append(f"    failures: {_listed(run.having('failed'))}")
    lines.append(f"  new failures: {_listed(comparison.unexplained)}")
    for node in sorted(comparison.new & suite.by_design.keys()):
        lines.append(f"  new by design: {node}: {suite.by_design[node]}")
    if comparison.flaky:
        lines.append(
            f"  flaky (failed swapped once, not when run again): {_listed(comparison.flaky)}"
        )
    return "\n".join(lines)


OUTCOMES = ("passed", "failed", "skipped")


def _listed(nodes: set[str] | frozenset[str]) -> str:
    return "none" if not nodes else "".join(f"\n      {node}" for node in sorted(nodes))
