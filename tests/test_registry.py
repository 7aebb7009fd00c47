"""The one registry pattern (proxyclip/method/registry.py) that VFMs and last blocks share."""
import pytest

from proxyclip.errors import ProxyCLIPError
from proxyclip.method.last_block import LAST_BLOCKS, LastBlock
from proxyclip.method.registry import Registry
from proxyclip.method.vfm.registry import VFMS, list_vfms


def test_entries_register_by_call_or_decorator_once_and_are_read_only():
    things = Registry("thing", "thing")
    things.register("b", 2)

    @things.register("a")
    class A:
        pass

    assert A.__name__ == "A" and list(things) == ["b", "a"] and dict(things) == {"b": 2, "a": A}
    assert "a" in things and things.get("c") is None and len(things) == 2
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        things.register("a", 3)
    with pytest.raises(TypeError):
        things["c"] = 3                                 # only register() adds
    with pytest.raises(ProxyCLIPError, match=r"Unknown thing 'aa'\. Did you mean: a\?.*Set `thing:` to one of: a, b\."):
        things.lookup("aa")


def test_vfms_and_last_blocks_are_the_same_kind_of_registry():
    assert isinstance(VFMS, Registry) and isinstance(LAST_BLOCKS, Registry)
    assert sorted(VFMS) == list_vfms() and all(VFMS[name].name == name for name in VFMS)
    assert all(issubclass(block, LastBlock) for block in LAST_BLOCKS.values())
