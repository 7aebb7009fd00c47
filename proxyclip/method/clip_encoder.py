"""CLIP through open_clip: building it with the weights' own activation, strictly (docs/method.md §2). Its dense
forward is clip_tower.py's."""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import open_clip
from torch import nn

from ..errors import ProxyCLIPError, close_matches
from .loading import download_guard, file_sha256, is_local_path, weights_must_match


def _resolve_model_name(model: str | dict) -> str:
    """An open_clip model name: a built-in one, a model-config JSON file (registered under its stem) or an inline
    model config (a dict with embed_dim, vision_cfg, text_cfg; registered under a name from its content)."""
    if isinstance(model, dict):
        text = json.dumps(model, sort_keys=True)
        path = Path(tempfile.gettempdir()) / f"proxyclip-inline-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
        if not path.is_file():
            path.write_text(text)
        open_clip.add_model_config(path)
        return path.stem
    if model.endswith(".json"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ProxyCLIPError(f"CLIP model config '{path}' does not exist (relative paths start at the working folder "
                                 f"{Path.cwd()}). Give an open_clip model name (e.g. ViT-B-16), an existing JSON file or "
                                 "the model config inline.")
        open_clip.add_model_config(path)
        return path.stem
    if model not in open_clip.list_models():
        raise ProxyCLIPError(
            f"Unknown CLIP model '{model}'. {close_matches(model, open_clip.list_models())} "
            "Use an open_clip model name (`open_clip.list_models()`) or a model-config JSON file."
        )
    return model


def model_identity(model: str | dict) -> str:
    """What names the architecture in caches and records: the open_clip name, or the config's content."""
    if isinstance(model, dict):
        return "inline:" + hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()
    if model.endswith(".json"):
        path = Path(model).expanduser()
        return f"{model}:" + (file_sha256(path) if path.is_file() else "missing")
    return model


def resolve_quick_gelu(name: str, pretrained: str | None, quick_gelu: bool | None) -> bool:
    """The activation CLIP's MLPs must use: QuickGELU (True) or GELU (False), from the weights.

    A pretrained tag knows how its weights were trained (open_clip's pretrained config: OpenAI's are QuickGELU,
    LAION's ViT-H/14 GELU); an explicit `quick_gelu` must agree with it. A local checkpoint does not say, so
    `quick_gelu` must be given unless the model config declares it. Random weights follow the model config.
    """
    declared = open_clip.get_model_config(name) or {}
    if pretrained is not None and not is_local_path(pretrained):
        trained = bool(open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu", False))
        if quick_gelu is not None and bool(quick_gelu) != trained:
            raise ProxyCLIPError(
                f"clip_quick_gelu={quick_gelu} contradicts the weights of CLIP {name} ({pretrained}), which were trained "
                f"with {'QuickGELU' if trained else 'GELU'}. Set clip_quick_gelu to {str(trained).lower()} or null (from the tag)."
            )
        return trained
    if quick_gelu is not None:
        return bool(quick_gelu)
    if pretrained is not None and "quick_gelu" not in declared:
        raise ProxyCLIPError(
            f"The checkpoint '{pretrained}' does not say which activation CLIP {name} was trained with, and a wrong one "
            "changes every embedding. Set clip_quick_gelu: true for OpenAI's weights (QuickGELU), false for GELU "
            "weights such as LAION's ViT-H-14 (--model.segmentor.clip_quick_gelu true|false)."
        )
    return bool(declared.get("quick_gelu", False))


def build_clip(model_name: str | dict = "ViT-B-16", pretrained: str | None = "openai",
               quick_gelu: bool | None = None) -> tuple[nn.Module, object]:
    """(open_clip model in eval mode with frozen weights, its tokenizer).

    pretrained: an open_clip pretrained tag (e.g. "openai", "laion2b_s32b_b79k"), a local checkpoint file,
        or None for random initialisation.
    quick_gelu: the MLP activation (`resolve_quick_gelu`): None takes it from the tag (or the model config).
    """
    name = _resolve_model_name(model_name)
    quick_gelu = resolve_quick_gelu(name, pretrained, quick_gelu)
    # force_quick_gelu sets open_clip's own config (so its tag check agrees); quick_gelu=False overrides a
    # config that declares QuickGELU.
    activation = {"force_quick_gelu": True} if quick_gelu else {"quick_gelu": False}
    # The architecture first, on its own: what goes wrong there is the architecture's error, not the weights'.
    with weights_must_match(f"CLIP {name}", "", random_init=True, loads=False):
        model = open_clip.create_model(name, pretrained=None, **activation)
    if pretrained is not None and is_local_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ProxyCLIPError(f"CLIP checkpoint file not found: '{pretrained}'. Fix `clip_pretrained` in the config.")
        with weights_must_match(f"CLIP {name} from the checkpoint '{pretrained}'",
                                "Use the model name the checkpoint was trained with (clip_model), or a checkpoint of "
                                "this model (clip_pretrained)."):
            open_clip.load_checkpoint(model, str(path), strict=True)
    elif pretrained is not None:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ProxyCLIPError(
                f"Unknown pretrained tag '{pretrained}' for CLIP '{name}'. {close_matches(pretrained, tags)} "
                "Use one of open_clip.list_pretrained_tags_by_model(name), a local checkpoint path, or null for random weights."
            )
        # what open_clip.create_model(name, pretrained=tag) does, in two steps: the download, then a strict load
        with download_guard(f"CLIP {name} ({pretrained})"):
            checkpoint = open_clip.download_pretrained(open_clip.get_pretrained_cfg(name, pretrained))
        with weights_must_match(f"CLIP {name} ({pretrained})",
                                f"The file {checkpoint} is not the tag's weights for this model (a broken or foreign "
                                "download): delete it and download it again (`proxyclip-weights download` with your "
                                "model config)."):
            open_clip.load_checkpoint(model, checkpoint, strict=True)
    model.eval().requires_grad_(False)
    return model, open_clip.get_tokenizer(name)


def clip_activation(model: nn.Module) -> str:
    """The class name of the MLP activation CLIP's transformer blocks use ("QuickGELU", "GELU", ...)."""
    names = sorted({type(module).__name__ for path, module in model.named_modules() if path.endswith("mlp.gelu")})
    return "+".join(names) or "unknown"


def clip_patch_size(visual: nn.Module) -> tuple[int, int]:
    return tuple(visual.conv1.kernel_size)
