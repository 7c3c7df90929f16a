"""Sphinx configuration: Markdown pages (MyST), the API reference from the docstrings (autodoc),
the furo theme. Build: sphinx-build -W --keep-going -n -b html docs docs/_build/html"""

from __future__ import annotations

import refreshing_session

project = "refreshing_session"
author = "the refreshing_session authors"
project_copyright = "2026, the refreshing_session authors"
release = version = refreshing_session.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"refreshing_session {release}"

# Links such as [the lock](../explanation/lock.md#the-lock) are checked: a heading's anchor is its
# slug, and a link to a page or an anchor that does not exist is a warning (an error in CI).
myst_heading_anchors = 3
myst_enable_extensions = ["deflist"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Nitpicky mode checks every cross-reference; these name other projects' objects, which this
# offline build has no inventory for.
nitpick_ignore_regex = [
    (
        "py:(class|exc|obj|func|meth|data)",
        r"(requests|urllib3|filelock|redis|collections|typing"
        r"|pathlib|os|datetime|_typeshed|types|argparse|http|json|threading|contextlib)(\..*)?",
    ),
    (
        "py:(class|obj)",
        r"(Path|Mapping|Sequence|Callable|Iterator|Any|Self|Response|Request"
        r"|PreparedRequest|Retry|TracebackType|StrPath|Headers)",
    ),
    # Private bases shown by show-inheritance; their members are documented on the subclasses.
    ("py:class", r"refreshing_session\.(errors\._Travels|refreshers\.TokenEndpoint)"),
    # The refreshers' keyword arguments (a TypedDict); each is described in their docstrings.
    ("py:class", r"(refreshing_session\.oauth_client\.)?ClientOptions"),
]
