"""Generated parts of the documentation's report pages (docs/reports/)."""

from __future__ import annotations

from pathlib import Path

REPORTS = Path(__file__).resolve().parent.parent / "docs" / "reports"


def write_between_markers(page: Path, name: str, text: str) -> None:
    """Replace what stands between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in
    ``page`` with ``text``; the page's own words around the markers stay.

    Raises ValueError when the page lacks either marker, rather than writing nowhere.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    content = page.read_text(encoding="utf-8")
    if begin not in content or end not in content:
        raise ValueError(f"{page} has no {begin} ... {end} section to write the report into")
    before, rest = content.split(begin, 1)
    after = rest.split(end, 1)[1]
    page.write_text(f"{before}{begin}\n{text.rstrip()}\n{end}{after}", encoding="utf-8")
