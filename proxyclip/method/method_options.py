"""Which options belong to which method, and what an option left unset (None) means.

A method's own options are `method_kwargs`, its last block's options (the typed `__init__` of its class in
LAST_BLOCKS: proxyclip's beta and gamma, clearclip's similarity, naclip's std, scclip's block indices and thresholds,
cass's weights and switches; sclip has none). They are checked against that signature, with jsonargparse's typed
validation (the CLI's own), before any model is built: an option the method does not have (another method's, named
with its owner) or a value of the wrong type is refused in one paragraph that lists the method's options; unset ones
are the method's defaults. They are not arguments of the shared segmentor, which the other methods would ignore.

The VFM options (`vfm`, `vfm_pretrained`, `vfm_kwargs`, `vfm_mean`, `vfm_std`) stay segmentor arguments: the VFM
machinery (building, weights, pixel statistics) is shared by every method that has a VFM (ProxyCLIP and CASS). They
are read only by those methods, so they are refused, naming the methods that own them, for the others; left unset,
they take the method's own defaults.
"""
from __future__ import annotations

import difflib
import inspect
import json
import math
import re
from typing import Any, Literal, Sequence, get_args, get_origin, get_type_hints

from ..errors import ProxyCLIPError
from ..shipped_configs import shown_name
from .last_block import LAST_BLOCKS, method_folder

#: the values used outside a benchmark protocol (the CLI sets them from the data config): the paper's crop and
#: stride, and every pixel decided by its best class
PROTOCOL_DEFAULTS = {"prob_thd": 0.0, "crop_size": 336, "stride": 112}
VFM_OPTIONS = ("vfm", "vfm_pretrained", "vfm_kwargs", "vfm_mean", "vfm_std")
#: the segmentor options only some methods read (check_method_options refuses them for the others)
METHOD_OPTIONS = VFM_OPTIONS


def method_option_types(method: str) -> dict[str, tuple[Any, Any]]:
    """The method's own options: name -> (type, default), from its last block's typed `__init__`, e.g. proxyclip:
    {"beta": (float, 1.2), "gamma": (float, 3.0)}."""
    init = LAST_BLOCKS[method].__init__
    hints = get_type_hints(init)
    return {name: (hints.get(name, Any), p.default) for name, p in inspect.signature(init).parameters.items()
            if name not in ("self", "args", "kwargs")}


def _type_text(annotation: Any, article: bool = False) -> str:
    """float -> "float" ("a float"); a Literal -> its values, "'query-query' or 'query-key'"."""
    if get_origin(annotation) is Literal:
        return " or ".join(repr(value) if isinstance(value, str) else yaml_value(value) for value in get_args(annotation))
    name = getattr(annotation, "__name__", str(annotation))
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}" if article else name


def describe_method_options(method: str) -> str:
    """"beta (float, default 1.2), gamma (float, default 3.0)"; "none" for a method without options."""
    options = method_option_types(method)
    return ", ".join(f"{name} ({_type_text(kind)}, default {yaml_value(default)})" for name, (kind, default) in options.items()) \
        or "none"


def methods_help() -> str:
    """"proxyclip (proxy attention from the VFM), sclip (...), ...": every method with its class's `summary`."""
    return ", ".join(f"{name} ({block.summary})" for name, block in LAST_BLOCKS.items())


def method_kwargs_help() -> str:
    """"proxyclip: beta (float, 1.2), gamma (float, 3.0); sclip: none; ...": every method's own options."""
    return "; ".join(f"{method}: " + (", ".join(f"{name} ({_type_text(kind)}, {yaml_value(default)})"
                                                 for name, (kind, default) in method_option_types(method).items()) or "none")
                     for method in LAST_BLOCKS)


def _owners(option: str) -> list[str]:
    """The methods that read `option`: a VFM option's are the methods with a VFM; a method's own option's, its own."""
    if option in VFM_OPTIONS:
        return [m for m, block in LAST_BLOCKS.items() if block.needs_vfm]
    return method_option_owners().get(option, [])


def yaml_value(value: Any) -> str:
    """`value` as YAML flow text that reads back as the same value (yaml.safe_load, as the CLI parses it): null,
    true / false, floats with a dot (PyYAML reads 1e-05 as a string), strings double-quoted (a single-quoted shell
    argument carries them), sequences (tuples too) as [...], mappings as {...}."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
        mantissa, e, exponent = repr(value).partition("e")
        return mantissa + ("" if "." in mantissa else ".0") + (f"e{'' if exponent[0] in '+-' else '+'}{exponent}" if e else "")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return _show(value)
    return json.dumps(str(value))


def _show(options: dict[str, Any]) -> str:
    """{beta: 1.2, similarity: "query-query", sam_kwargs: null}: YAML that a single-quoted shell argument carries as
    it is, and that reads back as `options` (yaml_value)."""
    return "{" + ", ".join(f"{name if re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', str(name)) else yaml_value(name)}: "
                           f"{yaml_value(value)}" for name, value in options.items()) + "}"


def method_kwargs_paragraph(method: str, problem: str) -> str:
    """The one paragraph that refuses method_kwargs: the problem, then the method's options and how to give them."""
    options = method_option_types(method)
    if not options:
        return f"{problem} The {method} method has no options: leave method_kwargs out (or null)."
    example = _show({name: default for name, (_, default) in options.items()})
    return (f"{problem} The {method} method's options are {describe_method_options(method)}, given as "
            f"method_kwargs, e.g. --model.segmentor.method_kwargs '{example}'; unset ones keep their defaults.")


def method_option_owners() -> dict[str, list[str]]:
    """Every method's own option -> the methods that have it, e.g. {"beta": ["proxyclip"], "std": ["naclip"], ...}."""
    owners: dict[str, list[str]] = {}
    for method in LAST_BLOCKS:
        for name in method_option_types(method):
            owners.setdefault(name, []).append(method)
    return owners


def listed(names: Sequence[str]) -> str:
    """["a"] -> "a"; ["a", "b"] -> "a and b"; ["a", "b", "c"] -> "a, b and c"."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)


def moved_option_paragraph(option: str) -> str | None:
    """For a method's own option given as a segmentor argument (the spelling before method_kwargs, e.g.
    `--model.segmentor.beta 1.0` or `beta:` in a model YAML): the one paragraph that says how to give it; None for
    any other name."""
    owners = method_option_owners().get(option)
    if not owners:
        return None
    example = _show({name: default for name, (_, default) in method_option_types(owners[0]).items()})
    return (f"{option} is an option of the {listed(owners)} method{'s' * (len(owners) > 1)}, not of the segmentor: a method's own "
            f"options are given as method_kwargs, on the command line --model.segmentor.method_kwargs '{example}' "
            f"(quoted YAML, a space after each colon), in a model YAML `method_kwargs: {example}` under `segmentor:`. "
            f"The {owners[0]} method's options are {describe_method_options(owners[0])}; unset ones keep their "
            f"defaults.")


def check_method_kwargs(method: str, method_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The method's options with its defaults filled in, once `method_kwargs` is checked against the method's own
    typed options (jsonargparse's validation, as the CLI's); a ProxyCLIPError refuses an option the method does not
    have (naming the method it belongs to) or a value of the wrong type, in one paragraph."""
    if method not in LAST_BLOCKS:
        LAST_BLOCKS.lookup(method)                    # raises the unknown-method paragraph
    if not isinstance(method_kwargs, (dict, type(None))):
        raise ProxyCLIPError(method_kwargs_paragraph(method, f"method_kwargs must be a mapping of option to value, "
                                                             f"got {method_kwargs!r}."))
    given = dict(method_kwargs or {})
    options = method_option_types(method)
    foreign = [name for name in given if name not in options]
    if foreign:
        parts, by_owner = [], {}
        for name in foreign:
            owners = tuple(_owners(name))
            close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
            if owners:
                by_owner.setdefault(owners, []).append(name)
            else:
                parts.append(f"{name} is no method's option" + (f" (did you mean {close[0]}?)" if close else ""))
        parts[:0] = [f"{listed(names)} {'are' if len(names) > 1 else 'is'} "
                     + (f"{owners[0]}'s option{'s' * (len(names) > 1)}" if len(owners) == 1
                        else f"{'options' if len(names) > 1 else 'an option'} of {listed(owners)}")
                     for owners, names in by_owner.items()]
        others = any(_owners(name) for name in foreign)
        preset = preset_hint(method)
        raise ProxyCLIPError(method_kwargs_paragraph(
            method, f"method_kwargs {_show({name: given[name] for name in foreign})} cannot be given to the {method} method: "
                    f"{'; '.join(parts)}.") + (f" A {method} model config ({preset}) sets only its own." if others else ""))
    from jsonargparse import ArgumentParser          # the CLI's own typed validation of a class signature
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(LAST_BLOCKS[method])
    try:
        checked = dict(parser.parse_object(given))
    except Exception as exc:  # noqa: BLE001 - jsonargparse's ArgumentError, worded as one paragraph below
        key = re.search(r'Parser key "(\w+)"', str(exc))
        name = key.group(1) if key and key.group(1) in given else next(iter(given))
        kind, _ = options[name]
        raise ProxyCLIPError(method_kwargs_paragraph(
            method, f"method_kwargs {_show({name: given[name]})}: the {method} method's {name} takes "
                    f"{_type_text(kind, article=True)}, not {given[name]!r}.")) from None
    try:                             # the method's own checks of the values (e.g. scclip's ranges); it holds no weights
        LAST_BLOCKS[method](**checked)
    except ProxyCLIPError:
        raise
    except ValueError as exc:
        raise ProxyCLIPError(method_kwargs_paragraph(method, f"method_kwargs {_show(given)}: {exc}.")) from None
    return checked


def preset_hint(method: str) -> str:
    """The method's model configs as a user types them (configs/model/<preset>.yaml for a shipped one, else the
    file's path): the presets/ of its folder, tiny ones left out."""
    presets = sorted(p for p in (method_folder(method) / "presets").glob("*.yaml") if not p.stem.startswith("tiny_"))
    shown = [shown_name(p, f"configs/model/{p.name}") for p in presets]
    return (shown[0] if len(shown) == 1 else f"e.g. {shown[0]}") if shown else f"{method}'s presets/ folder"


def check_method_options(method: str, method_kwargs: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Refuse, in one paragraph, the options given (not None) that `method` does not read; returns the method's own
    options with its defaults filled in (check_method_kwargs).

    options: the VFM's segmentor options (VFM_OPTIONS), owned by the methods with a VFM only.
    """
    if method not in LAST_BLOCKS:
        LAST_BLOCKS.lookup(method)                    # raises the unknown-method paragraph
    foreign = {name: value for name, value in options.items()
               if value is not None and name in VFM_OPTIONS and not LAST_BLOCKS[method].needs_vfm}
    if foreign:
        owners = sorted({owner for name in foreign for owner in _owners(name)})
        given = ", ".join(f"{name}={value!r}" for name, value in foreign.items())
        raise ProxyCLIPError(
            f"{given}: {'these are options' if len(foreign) > 1 else 'an option'} of {listed(owners)} only; the "
            f"{method} method does not read {'them' if len(foreign) > 1 else 'it'}. Leave {', '.join(foreign)} out (or "
            f"null, e.g. --model.segmentor.{next(iter(foreign))} null), or start from a {method} model config "
            f"({preset_hint(method)}), which sets none of them.")
    return check_method_kwargs(method, method_kwargs)


def method_settings(method: str, method_kwargs: dict[str, Any] | None, *, vfm: str | None,
                    vfm_pretrained: bool | str | None, vfm_kwargs: dict[str, Any] | None, vfm_mean: Any = None,
                    vfm_std: Any = None) -> tuple[dict[str, Any], str | None, bool | str | None]:
    """(the method's options, its defaults filled in; the VFM to build; its weights) once another method's options
    are refused: an unset VFM is the method's default one with the library's pretrained weights; a method without a
    VFM gets (None, None)."""
    block_kwargs = check_method_options(method, method_kwargs, vfm=vfm, vfm_pretrained=vfm_pretrained,
                                        vfm_kwargs=vfm_kwargs, vfm_mean=vfm_mean, vfm_std=vfm_std)
    return (block_kwargs, *method_vfm(method, vfm, vfm_pretrained))


def method_vfm(method: str, vfm: str | None, vfm_pretrained: bool | str | None) -> tuple[str | None, bool | str | None]:
    """(VFM name, pretrained setting) that `method` builds: unset ones are its default VFM with the library's
    pretrained weights (True); (None, None) for a method without a VFM."""
    block = LAST_BLOCKS[method]
    if not block.needs_vfm:
        return None, None
    return vfm or block.default_vfm, True if vfm_pretrained is None else vfm_pretrained


def protocol_values(prob_thd: float | None, crop_size: int | None, stride: int | None) -> tuple[float, int, int]:
    """The benchmark-protocol values as given, PROTOCOL_DEFAULTS where unset."""
    given = {"prob_thd": prob_thd, "crop_size": crop_size, "stride": stride}
    return tuple(PROTOCOL_DEFAULTS[k] if v is None else v for k, v in given.items())  # type: ignore[return-value]
