"""Every public name has a docstring, and help(refreshing_session) shows them."""

from __future__ import annotations

import inspect
import pydoc

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
        undocumented = [member_name for member_name, member in public_members(exported)
                        if not own_docstring(member).strip()]
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
