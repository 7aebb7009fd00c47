"""pyproject.toml's lower bounds admit no release that lacks an API the package calls."""
import re

from conftest import REPO_ROOT

# an API the package calls -> (its distribution, the first release that has it)
INTRODUCED = {
    "ImageFont.load_default_imagefont(": ("pillow", (10, 4)),   # Pillow 10.4.0 release notes: #8086 (proxyclip/shell/fonts.py)
    "ImageFont.load_default(": ("pillow", (10, 1)),             # 10.1.0: a FreeType font (Aileron), #7354
}


def floor(distribution: str) -> tuple[int, ...]:
    """The `>=` bound of `distribution` in pyproject.toml's dependencies."""
    text = (REPO_ROOT / "pyproject.toml").read_text()     # tomllib is Python 3.11+; the package supports 3.10
    found = re.search(rf'^\s*"{re.escape(distribution)}(?:\[[^\]]*\])?>=([\d.]+)",?\s*$', text, re.M | re.I)
    assert found, f"{distribution} has no >= bound in pyproject.toml"
    return tuple(int(part) for part in found.group(1).split("."))


def test_every_floor_covers_the_apis_the_package_calls():
    source = "".join(path.read_text() for folder in ("proxyclip", "datamodules") for path in (REPO_ROOT / folder).rglob("*.py"))
    called = {api: need for api, need in INTRODUCED.items() if api in source}
    assert "ImageFont.load_default_imagefont(" in called          # the table is about code that exists
    for api, (distribution, version) in called.items():
        assert floor(distribution) >= version, f"{api} needs {distribution}>={'.'.join(map(str, version))}"
