"""Sphinx configuration: Markdown pages (MyST) and the furo theme. Every page, the API reference
included (written by docs/gen_api.py), is plain Markdown that also reads on a code host.
Build: sphinx-build -W --keep-going -n -q -b html docs docs/_build/html"""

from __future__ import annotations

import refreshing_session

project = "refreshing_session"
author = "the refreshing_session authors"
project_copyright = "2026, the refreshing_session authors"
release = version = refreshing_session.__version__

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"refreshing_session {release}"

# Links such as [the lock](../explanation/lock.md#the-lock) are checked: a heading's anchor is its
# slug, and a link to a page or an anchor that does not exist is a warning (an error in CI).
myst_heading_anchors = 3
myst_enable_extensions = ["deflist"]
