"""hub_core's public names: its three lists of them agree, and each lazy name is what it says."""

from __future__ import annotations

import ast
import inspect
from importlib import import_module

import pytest

import hub_core


def type_checking_imports() -> dict[str, str]:
    """Map each name imported under ``if TYPE_CHECKING:`` in hub_core to its module."""
    tree = ast.parse(inspect.getsource(hub_core))
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1
    names: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom), ast.dump(node)
        assert node.level == 1, ast.dump(node)
        assert node.module, ast.dump(node)
        for alias in node.names:
            assert alias.asname is None, alias.name
            names[alias.name] = node.module
    return names


def test_the_type_checking_imports_all_and_lazy_table_name_the_same_set() -> None:
    imported = type_checking_imports()
    assert set(imported) == set(hub_core._LAZY)
    assert set(hub_core.__all__) == {*hub_core._LAZY, "__version__"}
    assert len(hub_core.__all__) == len(set(hub_core.__all__))


def test_each_name_is_imported_from_the_module_the_lazy_table_names() -> None:
    assert type_checking_imports() == hub_core._LAZY


@pytest.mark.parametrize("name", sorted(hub_core._LAZY))
def test_each_lazy_name_resolves_to_that_modules_attribute(name: str) -> None:
    module = import_module(f"hub_core.{hub_core._LAZY[name]}")
    assert getattr(hub_core, name) is getattr(module, name)


def test_dir_lists_every_public_name() -> None:
    assert set(hub_core.__all__) <= set(dir(hub_core))
