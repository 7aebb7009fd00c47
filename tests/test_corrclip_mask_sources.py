"""CorrCLIP's three region-mask sources give the same run (issue 21): (1) a folder of `<stem>.npz`, (2) SAM 2 in the
process (`mask_generator: sam2`), (3) `proxyclip-masks`, which writes the folder of (1) from the same SAM 2.

On the fake layout of every benchmark CorrCLIP's repository defines: `proxyclip-masks` writes the folder with a tiny
random Hiera built through sam2's own `build_sam2` (its weights saved as a checkpoint file, so that both sides load
the same ones); `main.py test` with CorrCLIP's preset (tiny CLIP and DINO) runs once on that folder and once with
SAM 2 in the process; the two metrics.json agree count for count, and the folder's masks are the generator's. The
generator's filters are opened (thresholds 0) so that random weights still give regions. sam2 is an optional extra:
skipped without it, except in CI (CI=true), which installs it (.ci/run).
"""
from __future__ import annotations

import json
import os

import pytest
import torch
import yaml

from conftest import REPO_ROOT
from test_corrclip import BENCHMARKS, tiny_corrclip_preset

if os.environ.get("CI"):
    import sam2  # noqa: F401  - CI installs the extra: never a silent skip there
else:
    pytest.importorskip("sam2", reason="the sam2 extra is not installed (pip install .[sam2])")

from test_sam2_masks import TINY  # noqa: E402  (after the skip: it imports sam2's own names)

OPEN = {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory):
    """A tiny random Hiera's checkpoint file, {"model": state_dict} as Meta publishes them."""
    from proxyclip.methods.corrclip.sam2_masks import SAM2MaskGenerator

    torch.manual_seed(0)
    generator = SAM2MaskGenerator("sam2_hiera_t", False, hydra_overrides=TINY, **OPEN)
    path = tmp_path_factory.mktemp("sam2") / "tiny_hiera.pt"
    torch.save({"model": generator.model.state_dict()}, path)
    return path


def run_corrclip(bench, root, out, method_kwargs, folder):
    from proxyclip.commands.cli import cli_main

    cli_main(["test", "--config", f"configs/{bench}.yaml", "--model", str(tiny_corrclip_preset(folder)),
              "--model.segmentor.method_kwargs", json.dumps(method_kwargs), "--data.init_args.root", str(root),
              "--model.output_dir", str(out), "--trainer.logger", "false", "--data.init_args.scale", "[400, 60]"])
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("bench", [b if b == "voc21" else pytest.param(b, marks=pytest.mark.slow) for b in BENCHMARKS])
def test_the_three_mask_sources_give_the_same_run(bench, tiny_sam2, tmp_path, capsys):
    from fake_datasets import WRITERS
    from proxyclip.commands.masks import main as masks_main
    from proxyclip.methods.corrclip.sam2_masks import SAM2MaskGenerator, read_instance_mask, read_rgb

    root = WRITERS[bench](tmp_path / "data", n=1)
    folder = tmp_path / "masks"
    code = masks_main(["--config", f"configs/{bench}.yaml", "--root", str(root), "--output", str(folder),
                       "--model", "sam2_hiera_t", "--checkpoint", str(tiny_sam2), "--accelerator", "cpu",
                       *[f"--{k}={v}" for k, v in OPEN.items()], *[f"--hydra_override={o}" for o in TINY]])
    assert code == 0, capsys.readouterr().err
    (written,) = folder.glob("*.npz")
    (image,) = [p for p in root.rglob(written.stem + ".*") if p.suffix in (".jpg", ".png")
                and {"JPEGImages", "images", "leftImg8bit"} & set(p.parts)]
    generator = SAM2MaskGenerator("sam2_hiera_t", str(tiny_sam2), hydra_overrides=TINY, **OPEN)
    mask = read_instance_mask(folder, image)
    assert torch.equal(mask, generator(read_rgb(image))) and mask.max() >= 1      # regions, painted as the original

    from_folder = run_corrclip(bench, root, tmp_path / "out_folder", {"instance_mask_path": str(folder)}, tmp_path)
    in_process = run_corrclip(bench, root, tmp_path / "out_sam2", {
        "mask_generator": "sam2", "sam2_model": "sam2_hiera_t", "sam2_checkpoint": str(tiny_sam2),
        "sam2_overrides": TINY, **OPEN}, tmp_path)
    assert in_process["method_options"]["mask_generator"] == "sam2"
    assert from_folder["method_options"]["instance_mask_path"] == str(folder)
    for key in ("num_images", "aAcc", "mIoU", "per_class"):
        assert in_process[key] == from_folder[key], key
    recorded = yaml.safe_load(json.dumps(in_process["method_options"]))
    assert recorded["sam2_checkpoint"] == str(tiny_sam2) and recorded["points_per_side"] == 2


def test_a_run_without_masks_names_the_three_ways(tmp_path, capsys):
    """No folder and no generator: one paragraph naming (1) the folder, (2) sam2, (3) proxyclip-masks, before any
    model is built (the CLI exits with it)."""
    from proxyclip.commands.cli import cli_main

    spec = yaml.safe_load((REPO_ROOT / "configs" / "model" / "corrclip_vitb16.yaml").read_text())
    assert "method_kwargs" not in spec["segmentor"]          # the preset carries no mask source: the user's
    with pytest.raises(SystemExit):
        cli_main(["test", "--config", "configs/voc21.yaml", "--model", "configs/model/corrclip_vitb16.yaml",
                  "--data.init_args.root", str(tmp_path)])
    err = capsys.readouterr().err
    assert "instance_mask_path" in err and "mask_generator: sam2" in err and "proxyclip-masks" in err
    assert err.count("\n\n") <= 2
