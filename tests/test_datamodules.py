"""The ten benchmark DataModules on fake copies of their real layouts (tests/fake_datasets.py)."""
from __future__ import annotations

import hashlib
import json
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from fake_datasets import N_IMAGES, WRITERS, write_ade847, write_coco, write_context, write_voc

import datamodules
from datamodules import DataError, SegmentationDataModule

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "data"
# sha256 of each packaged vocabulary file: the original setups' files, byte for byte (docs/method.md §4, §7). A
# change here changes the text embeddings and every number; it must be a deliberate one.
PACKAGED_SHA256 = {
    "ade20k.txt": "e53ded02c488bdb903ef000a2d207e4ac4f2bb4502a72572e4aab7c2504aef3a",
    "ade20k847.txt": "5d6612d2a2f9778fc7270baf0db7bc800b054d1aa1f107e323197e8c54e33e26",
    "city_scapes.txt": "6f6782fc1bf92bfd9f5562192e92045e0e093870e613f387f6c98fc66d4ceba4",
    "clearclip/coco_object.txt": "80701ae9381b4e718e0285f562e15dfa955a3df98ced2a8a3586fd245fe3368b",
    "clearclip/voc21.txt": "cd16b467c4a2286105ca493686d282a27714097325427bcc5acf97494beda986",
    "common/coco_object.txt": "1f17b53017e442257cad2025ab981ddeb28d048af00dcac8ae810bc25a6a9a77",
    "common/voc21.txt": "265d9ede93be451d724981c5ffde13a8eb3082674e98021aa8d5445f81f4498a",
    "coco_object.txt": "87b6d3e1d3adf5202f4fe5a2a939cfc62224065f3a8e44a8f64fe1a81b751dc6",
    "coco_stuff.txt": "fb98709b9ab1baff4fd930bac4a77772a0458c7d534911de545f9a4081e14a3e",
    "context459.txt": "883209fb0be7f54a6e0e8a530e6cfdf0400a5dafa509809c8141bd78b3ce759f",
    "context59.txt": "cd808465f06a16169edc25580073f0eda347e64f06cc1c2e24acd0b237f6497d",
    "context60.txt": "5e620446a8699f292a4c2e37fa8918a33dd4f14713dc1b3f22884d2be68b45a1",
    "corrclip/ade20k.txt": "09ac710c57fc65910822a955574d054d166e002f3555dde6c824a43585f68d70",   # CorrCLIP's configs/cls_ade20k.txt, byte for byte
    "corrclip/city_scapes.txt": "8dba4f1e3eeefc376b15dd566ab11867bf6572b209b8de2d18a108142f8d2c23",   # CorrCLIP's configs/cls_city_scapes.txt, byte for byte
    "corrclip/coco_object.txt": "6d0d48b0979836237bee4bb1e91be677cbb704a379d9d09440e658fd92c50100",   # CorrCLIP's configs/cls_coco_object.txt, byte for byte
    "corrclip/coco_stuff.txt": "c39fe2dd982fa5daa287e4da14788c30906e661787e890fc800c9fed94090a72",   # CorrCLIP's configs/cls_coco_stuff.txt, byte for byte
    "corrclip/context59.txt": "106c0f1f2c9c4fac51513ed97f3a524c049a377a8976acd7fabc914181d73a85",   # CorrCLIP's configs/cls_context59.txt, byte for byte
    "corrclip/context60.txt": "5666dc439704e29a20bf02782bb60a6d568d2e8af4e06788dfc891189862282d",   # CorrCLIP's configs/cls_context60.txt, byte for byte
    "corrclip/voc20.txt": "dd9755431039265bf4de125628ff867ee708fe48ea8e98de4f8793093f1231d6",   # CorrCLIP's configs/cls_voc20.txt, byte for byte
    "corrclip/voc21.txt": "9ea46c7f208472559b54660bf8715b3ce2f7801eefe9adbae517e7f340e5e768",   # CorrCLIP's configs/cls_voc21.txt, byte for byte
    "sclip/coco_object.txt": "0537674e6116431443b810b6046b1f29b3e9424f22b48a650246690cbcebbbb9",
    "sclip/voc20.txt": "cc191a92a32fc7291ead278dbcd8a94d43085c2c5e165b157ca78d2e8721a50d",
    "sclip/voc21.txt": "a4123cd7e2a7f60f5dbe8f35dabe30594cf0e666fa02854c414de02de5e7e9f6",
    "voc20.txt": "6b9a85ffb907e34ac920d704a520b45e1424bf96796ca7de5b1823ee202db119",
    "voc21.txt": "6a194e9134d44459bf8b86ba89a9cf06242848051e04d130011c017bca3e3c05",
}

# docs/method.md §7, restated: classes, resize (long, short), prob_thd, crop, stride, vocabulary, label rule.
PROTOCOL = {
    "voc21": (21, (2048, 336), 0.2, 336, 112, "voc21", "identity"),
    "voc20": (20, (2048, 336), 0.0, 336, 112, "voc20", "reduce_zero"),
    "context60": (60, (2048, 336), 0.15, 336, 112, "context60", "identity"),
    "context59": (59, (2048, 336), 0.0, 336, 112, "context59", "reduce_zero"),
    "coco_object": (81, (2048, 336), 0.25, 336, 112, "coco_object", "identity"),
    "coco_stuff": (171, (2048, 336), 0.0, 336, 112, "coco_stuff", "identity"),
    "cityscapes": (19, (2048, 448), 0.0, 224, 112, "city_scapes", "identity"),
    "ade20k": (150, (2048, 448), 0.0, 336, 112, "ade20k", "reduce_zero"),
    "pc459": (459, (2048, 448), 0.0, 336, 112, "context459", "identity"),
    "ade847": (847, (2048, 448), 0.0, 336, 112, "ade20k847", "identity"),
}
TIF_SETS = ("pc459", "ade847")


def load_config(name: str) -> tuple[type[SegmentationDataModule], dict]:
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    module, cls_name = cfg["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls_name), dict(cfg["init_args"])


def make(name: str, root: Path, **overrides) -> SegmentationDataModule:
    cls, init_args = load_config(name)
    init_args.update(root=str(root), **overrides)
    return cls(**init_args)


def mmcv_rescale(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv.rescale_size((w, h), scale) restated: returns (new_h, new_w)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * float(factor) + 0.5), int(w * float(factor) + 0.5)


def expected_label(raw: np.ndarray, rule: str) -> np.ndarray:
    raw = raw.astype(np.int64)
    if rule == "identity":
        return raw
    return np.where((raw == 0) | (raw == 255), 255, raw - 1)


def read_raw(path: str | Path) -> np.ndarray:
    return np.array(Image.open(path))


@pytest.fixture(scope="session")
def roots(tmp_path_factory) -> dict[str, Path]:
    """One fake root per layout, shared by the configs that share it (written once)."""
    written: dict = {}
    out = {}
    for name, writer in WRITERS.items():
        if writer not in written:
            written[writer] = writer(tmp_path_factory.mktemp(writer.__name__))
        out[name] = written[writer]
    return out


# --------------------------------------------------------------------------- configs

def test_every_config_is_there():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(PROTOCOL)
    assert sorted(datamodules.DATAMODULES) == sorted(PROTOCOL)


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_config_holds_the_protocol(name):
    text = (CONFIGS / f"{name}.yaml").read_text()
    assert sum(line.startswith("#") for line in text.splitlines()) == 1 and "docs/method.md §7" in text
    cls, args = load_config(name)
    classes, scale, thd, crop, stride, names, _ = PROTOCOL[name]
    assert issubclass(cls, SegmentationDataModule) and cls.dataset_name == name
    assert cls.num_classes == classes
    assert tuple(args["scale"]) == scale and float(args["prob_thd"]) == thd
    assert args["crop_size"] == crop and args["stride"] == stride and args["names_file"] == names
    assert args["root"].startswith("data/")


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_config_through_lightning_cli(name, roots):
    """The YAML is a LightningCLI data config in subclass form: `--data FILE` (or `data: FILE` in a
    top-level config), then `--data.init_args.root` overrides."""
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.demos.boring_classes import BoringModel

    cli = LightningCLI(BoringModel, SegmentationDataModule, subclass_mode_data=True, run=False,
                       save_config_callback=None, trainer_defaults={"logger": False},
                       args=["--data", str(CONFIGS / f"{name}.yaml"), "--data.init_args.root", str(roots[name])])
    dm = cli.datamodule
    classes, scale, thd, crop, stride, _, _ = PROTOCOL[name]
    assert dm.root == str(roots[name]) and dm.scale == scale and dm.prob_thd == thd
    assert (dm.crop_size, dm.stride, dm.num_classes, len(dm.class_names)) == (crop, stride, classes, classes)
    assert dm.ignore_index == (65535 if name in TIF_SETS else 255) and dm.dataset_name == name


def test_config_included_from_a_top_level_config(tmp_path, roots):
    """`data: data/voc21.yaml` in a top-level config (path relative to that file), as configs/demo.yaml does."""
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.demos.boring_classes import BoringModel

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "voc20.yaml").write_bytes((CONFIGS / "voc20.yaml").read_bytes())
    (tmp_path / "top.yaml").write_text("data: data/voc20.yaml\n")
    cli = LightningCLI(BoringModel, SegmentationDataModule, subclass_mode_data=True, run=False,
                       save_config_callback=None, trainer_defaults={"logger": False},
                       args=["--config", str(tmp_path / "top.yaml"), "--data.init_args.root", str(roots["voc20"])])
    assert type(cli.datamodule).__name__ == "VOC20DataModule" and cli.datamodule.num_classes == 20


# --------------------------------------------------------------------------- vocabularies

def test_vocabularies_are_packaged_verbatim():
    packaged = Path(datamodules.__file__).parent / "class_names"
    found = {p.relative_to(packaged).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in packaged.rglob("*.txt")}
    assert found == PACKAGED_SHA256
    lines = {name: (packaged / name).read_text(encoding="utf-8-sig").splitlines() for name in PACKAGED_SHA256}
    # the spot checks docs/method.md §4 and §7 name
    assert lines["voc21.txt"][0] == ("sky; wall; tree; wood; grass; road; sea; river; mountain; sands; desk; bed; building; "
                                     "cloud; lamp; door; window; wardrobe; ceiling; shelf; curtain; stair; floor; hill; rail; fence")
    assert lines["coco_object.txt"][0] == ("sky; wall; tree; wood; grass; road; sea; river; mountain; sands; desk; bed; "
                                           "building; cloud; floor; hill; rail")
    assert lines["context60.txt"][0] == "background"
    assert (lines["voc21.txt"][4], lines["voc21.txt"][11], lines["voc21.txt"][16], lines["voc21.txt"][20]) == \
        ("ship", "table", "pottedplant", "tvmonitor")                      # boat, diningtable; mmseg's names unspaced
    assert "trafficlight" in lines["city_scapes.txt"] and "chestofdrawers" in lines["ade20k.txt"]
    assert "traffic light" in lines["coco_object.txt"] and "potted plant" in lines["coco_object.txt"]   # spaces kept
    assert lines["ade20k847.txt"][1] == "building, edifice"               # one query: commas belong to names


# --------------------------------------------------------------------------- repeated classes (issue 19, item 14)

REPEATS = [   # (class lines, groups of positions that name the same class)
    (["cat", "dog", "Cat"], [[0, 2]]),
    (["chest of  drawers", " Chest of drawers "], [[0, 1]]),              # spacing and case as CLIP's tokenizer reads them
    (["dog; puppy", "cat", "puppy; dog", "DOG;  puppy"], [[0, 2, 3]]),      # the same names in any order
    (["sky; bed", "bed", "lamp"], []),                                      # a name shared by two classes: no repeat
    (["a", "b", "a", "b"], [[0, 2], [1, 3]]),
    (["bag, traveling bag", "bag", "traveling bag"], []),                  # commas belong to names
]


@pytest.mark.parametrize("lines, groups", REPEATS)
def test_repeated_classes_one_rule_for_data_and_method(lines, groups):
    """The data side restates the method's rule (it may not import proxyclip): both find the same repeats."""
    from datamodules.vocabulary_files import SEPARATOR, repeated_classes
    from proxyclip.errors import ProxyCLIPError
    from proxyclip.vocabulary import SEPARATOR as METHOD_SEPARATOR, parse_vocabulary, repeated_classes as method_rule

    assert SEPARATOR == METHOD_SEPARATOR
    assert repeated_classes(lines) == method_rule(lines) == groups
    if groups:
        with pytest.raises(ProxyCLIPError, match="names the same class more than once") as info:
            parse_vocabulary(lines)
        assert f"class {groups[0][0]} ({lines[groups[0][0]].strip()!r}) = class {groups[0][1]}" in str(info.value)
    else:
        parse_vocabulary(lines)


def test_a_vocabulary_file_that_repeats_a_class_is_refused_by_line(tmp_path, roots):
    vocab = tmp_path / "repeats.txt"
    vocab.write_text("background\n\n" + "\n".join(f"c{i}" for i in range(1, 20)) + "\nC3\n")  # 21 lines, c3 twice
    msg = assert_data_error(lambda: make("voc21", roots["voc21"], names_file=str(vocab)), vocab,
                            "line 5 ('c3') = line 22 ('C3')")
    assert "\n" not in msg
    for name in ("coco_object", "sclip/coco_object"):   # 'bed': a background synonym and a class, the original's file
        assert make("coco_object", roots["coco_object"], names_file=name).class_names[60] == "bed"


def test_a_predict_vocabulary_that_repeats_a_class_is_refused(tmp_path):
    from datamodules.image_folder import resolve_vocabulary

    assert_data_error(lambda: resolve_vocabulary("horse, sky; cloud, Horse"), "class 0 ('horse') = class 2 ('Horse')")
    assert_data_error(lambda: resolve_vocabulary("horse, grass", background="grass"),
                      "class 0 (background) ('grass') = class 2 ('grass')")
    assert resolve_vocabulary("horse, grass", background="sky, grass") == ["sky; grass", "horse", "grass"]
    vocab = tmp_path / "words.txt"
    vocab.write_text("horse\n\ncloud; sky\nsky;  cloud\n")
    assert_data_error(lambda: resolve_vocabulary(str(vocab)), str(vocab), "line 3 ('cloud; sky') = line 4 ('sky;  cloud')")


def test_the_cli_refuses_a_repeated_class_before_any_model_is_built(tmp_path, capsys):
    """One paragraph, exit code 2; the model named is one whose weights cannot be had here: it is never built."""
    from proxyclip.commands.cli import cli_main

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    with pytest.raises(SystemExit) as info:
        cli_main(["predict", "--config", str(REPO / "configs/demo.yaml"), "--model",
                  str(REPO / "configs/model/default.yaml"), "--model.segmentor.clip_pretrained",
                  str(tmp_path / "absent.bin"), "--model.segmentor.vfm_pretrained", str(tmp_path / "absent.pth"),
                  "--data.init_args.inputs", str(image), "--data.init_args.vocabulary", "cat, dog, CAT",
                  "--prediction_writer.output_dir", str(tmp_path / "out"), "--trainer.logger", "false"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "error: The vocabulary 'cat, dog, CAT' names the same class more than once: class 0 ('cat') = class 2 ('CAT')" in err
    assert "absent" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_class_names_are_the_lines(name, roots):
    dm = make(name, roots[name])
    raw = (Path(datamodules.__file__).parent / "class_names" / f"{PROTOCOL[name][5]}.txt").read_bytes().decode()
    lines = [line.strip() for line in raw.replace("\r\n", "\n").split("\n") if line.strip()]
    assert dm.class_names == lines and dm.num_classes == len(lines)
    assert all(n == n.strip() and "\r" not in n for n in dm.class_names)
    if name == "voc21":  # several names of one class stay on one line: the model splits on '; '
        assert dm.class_names[0].startswith("sky; wall; tree") and dm.class_names[1] == "aeroplane"


# --------------------------------------------------------------------------- loading

@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_test_loader(name, roots):
    classes, scale, _, _, _, _, rule = PROTOCOL[name]
    dm = make(name, roots[name], batch_size=2)
    dm.setup("test")
    assert len(dm.dataset) == N_IMAGES
    ignore = 65535 if name in TIF_SETS else 255
    assert dm.ignore_index == ignore
    seen = []
    for batch in dm.test_dataloader():
        assert set(batch) == {"images", "labels", "ori_sizes", "paths", "indices"}
        assert 1 <= len(batch["images"]) == len(batch["labels"]) == len(batch["paths"]) <= 2
        assert batch["indices"] == list(range(len(seen), len(seen) + len(batch["paths"])))   # positions in the dataset
        for image, label, size, path in zip(batch["images"], batch["labels"], batch["ori_sizes"], batch["paths"]):
            image_path, label_path = dm.dataset.samples[len(seen)]
            assert path == image_path
            seen.append(path)
            with Image.open(path) as im:
                w, h = im.size
            # image: uint8 RGB, resized per mmcv's keep-ratio rule, pixels = cv2.resize of the RGB decode
            assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
            assert tuple(image.shape[1:]) == mmcv_rescale(h, w, scale)
            rgb = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            nh, nw = image.shape[1:]
            ref = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
            assert np.array_equal(image.permute(1, 2, 0).numpy(), ref)
            # label: int64 at the ORIGINAL size, after the label mapping
            assert label.dtype == torch.int64 and tuple(label.shape) == (h, w) == tuple(size)
            raw = read_raw(label_path)
            assert np.array_equal(label.numpy(), expected_label(raw, rule))
            values = set(np.unique(label.numpy()).tolist())
            assert values <= set(range(classes)) | {ignore}
            assert classes - 1 in values or rule == "reduce_zero"
            if rule == "reduce_zero":  # 0 -> ignore, k -> k - 1, 255 stays 255
                assert np.all(label.numpy()[raw == 0] == 255) and np.all(label.numpy()[raw == 1] == 0)
                assert classes - 1 in values  # the raw maximum, classes, became classes - 1
            if name in TIF_SETS:  # 65535 is the ignore value, 255 an ordinary class
                assert raw.dtype == np.uint16 and 65535 in values and 255 in values
    assert seen == [str(p) for p, _ in dm.find_samples(roots[name])]
    assert len(set(seen)) == N_IMAGES
    # predict serves the same split
    assert sum(len(b["paths"]) for b in dm.predict_dataloader()) == N_IMAGES


def test_images_sorted_by_name_without_split(roots):
    dm = make("cityscapes", roots["cityscapes"])
    dm.setup()
    rel = [Path(p).relative_to(roots["cityscapes"] / "leftImg8bit" / "val").as_posix() for p, _ in dm.dataset.samples]
    assert rel == sorted(rel) and {r.split("/")[0] for r in rel} == {"frankfurt", "lindau"}
    assert all(lbl.endswith("_gtFine_labelTrainIds.png") for _, lbl in dm.dataset.samples)


def test_ade847_reads_validation_txt_when_present(tmp_path):
    """The original reads `<root>/validation.txt` (cfg_ade847.py, ann_file): a folder with extra images gives the
    listed set, in the listed order; without the file every image is used."""
    root = write_ade847(tmp_path)
    everything = [Path(p).stem for p, _ in make("ade847", root).find_samples(root)]
    assert len(everything) == N_IMAGES and everything == sorted(everything)
    listed = [everything[3], everything[0], everything[2]]
    (root / "validation.txt").write_text("\n".join(listed) + "\n")
    dm = make("ade847", root)
    dm.setup()
    assert [Path(p).stem for p, _ in dm.dataset.samples] == listed
    (root / "validation.txt").write_text("ADE_val_99999999\n")
    assert_data_error(lambda: make("ade847", root).setup(), "ADE_val_99999999")


@pytest.mark.parametrize("name", TIF_SETS)
def test_legacy_ignore_255(name, tmp_path):
    root = (write_context if name == "pc459" else write_ade847)(tmp_path)
    dm = make(name, root, legacy_ignore_255=True)
    assert dm.ignore_index == 255 and dm.num_classes == PROTOCOL[name][0]
    dm.setup()
    label_path = Path(dm.dataset.samples[0][1])
    raw = read_raw(label_path)
    raw[2, 0] = 5000  # out of range: passed through unvalidated in legacy mode
    Image.fromarray(raw).save(label_path, format="TIFF")
    item = dm.dataset[0]
    assert item["label"].dtype == torch.int64
    assert np.array_equal(item["label"].numpy(), raw.astype(np.int64))  # 65535 and 5000 kept as they are
    strict = make(name, root)
    strict.setup()
    with pytest.raises(DataError, match=re.escape(str(label_path))):
        strict.dataset[0]


# --------------------------------------------------------------------------- distributed

@pytest.mark.parametrize("world_size", [2, 3])
def test_distributed_sampler_counts_each_image_once(world_size, tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
    from torch.utils.data import DistributedSampler

    root = write_voc(tmp_path, n=7)
    dm = make("voc21", root, batch_size=2)
    dm.setup()
    trainer = Trainer(accelerator="cpu", devices=world_size, strategy="ddp", logger=False,
                      enable_progress_bar=False, enable_model_summary=False)
    per_rank, paths = [], []
    for rank in range(world_size):
        trainer.strategy.cluster_environment.set_global_rank(rank)
        assert (trainer.world_size, trainer.global_rank) == (world_size, rank)
        dm.trainer = trainer  # what trainer.test(datamodule=dm) does
        loader = dm.test_dataloader()
        assert isinstance(loader.sampler, UnrepeatedDistributedSampler)
        assert isinstance(loader.sampler, DistributedSampler)  # so Lightning does not replace it
        assert not trainer._data_connector._requires_distributed_sampler(loader)
        per_rank.append(list(loader.sampler))
        paths += [p for batch in loader for p in batch["paths"]]
        assert isinstance(dm.predict_dataloader().sampler, UnrepeatedDistributedSampler)
    flat = [i for idx in per_rank for i in idx]
    assert sorted(flat) == list(range(7))  # every index exactly once
    assert sorted(paths) == sorted(p for p, _ in dm.dataset.samples)
    dm.trainer = None
    assert dm.test_dataloader().sampler.__class__.__name__ == "SequentialSampler"


@pytest.mark.subprocess
def test_real_ddp_run_tests_each_image_once(tmp_path):
    """A real 2-process CPU DDP `trainer.test`: each rank logs the paths it saw."""
    script = tmp_path / "ddp_run.py"
    script.write_text(f"""
import torch
from lightning.pytorch import LightningModule, Trainer
from fake_datasets import write_voc
from datamodules import VOCDataModule

class Recorder(LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
    def test_step(self, batch, batch_idx):
        with open({str(tmp_path)!r} + f"/rank{{self.global_rank}}.txt", "a") as f:
            for p in batch["paths"]:
                f.write(p + "\\n")

if __name__ == "__main__":
    root = write_voc({str(tmp_path / 'data')!r}, n=7)
    dm = VOCDataModule(root=str(root), scale=(2048, 336), prob_thd=0.2, names_file="voc21", batch_size=2)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_fork", logger=False,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.test(Recorder(), datamodule=dm)
""")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}   # fake_datasets sits in tests/
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert len(ranks[0]) == 4 and len(ranks[1]) == 3
    all_paths = ranks[0] + ranks[1]
    assert len(set(all_paths)) == len(all_paths) == 7


# --------------------------------------------------------------------------- bad data

def assert_data_error(fn, *fragments):
    with pytest.raises(DataError) as info:
        fn()
    for fragment in fragments:
        assert str(fragment) in str(info.value), (fragment, str(info.value))
    return str(info.value)


def test_missing_root(tmp_path):
    missing = tmp_path / "nowhere" / "VOC2012"
    # construction already checks root and split file, so a wrong path fails before any model is built
    msg = assert_data_error(lambda: make("voc21", missing), missing, "root")
    assert "\n" not in msg


def test_missing_split_file(tmp_path):
    root = write_voc(tmp_path)
    split = root / "ImageSets" / "Segmentation" / "val.txt"
    split.unlink()
    assert_data_error(lambda: make("voc21", root), split)


def test_split_naming_absent_images(tmp_path):
    root = write_voc(tmp_path)
    split = root / "ImageSets" / "Segmentation" / "val.txt"
    ghosts = [f"2099_{i:06d}" for i in range(8)]
    split.write_text(split.read_text() + "\n".join(ghosts) + "\n")
    msg = assert_data_error(make("voc21", root).setup, root / "JPEGImages" / "2099_000000.jpg", "8 images",
                            "8 labels", "and 13 more")
    assert str(split) in msg


def test_missing_prepared_labels_say_how_to_make_them(tmp_path):
    root = write_coco(tmp_path)
    for p in (root / "annotations" / "val2017").glob("*_instanceTrainIds.png"):
        p.unlink()
    assert_data_error(make("coco_object", root).setup, "_instanceTrainIds.png", "datamodules.prepare coco-object")
    make("coco_stuff", root).setup()  # the other COCO labels are still fine


def test_empty_image_folder(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    (root / "images" / "validation").mkdir(parents=True)
    assert_data_error(make("ade20k", root).setup, "no ade20k images")
    assert_data_error(lambda: make("ade847", tmp_path / "ADE20K_2021_17_01"), "images_detectron2/validation")


def test_label_size_mismatch(tmp_path):
    root = write_voc(tmp_path)
    dm = make("voc21", root)
    dm.setup()
    label_path = Path(dm.dataset.samples[2][1])
    Image.fromarray(np.zeros((10, 11), np.uint8)).save(label_path)
    assert_data_error(lambda: dm.dataset[2], label_path, "11x10")
    assert_data_error(lambda: list(dm.test_dataloader()), label_path)


def test_out_of_range_label(tmp_path):
    root = write_voc(tmp_path)
    dm = make("voc21", root)
    dm.setup()
    label_path = Path(dm.dataset.samples[1][1])
    raw = read_raw(label_path)
    raw[3, 3] = 30
    Image.fromarray(raw).save(label_path)
    assert_data_error(lambda: dm.dataset[1], label_path, "30")
    # in VOC20 (reduce_zero_label) 21 is out of range: raw 21 -> 20 >= 20 classes
    raw[3, 3] = 21
    Image.fromarray(raw).save(label_path)
    dm20 = make("voc20", root)
    dm20.setup()
    assert_data_error(lambda: dm20.dataset[1], label_path, "21 (mapped to 20)")


def test_colour_label_is_rejected(tmp_path):
    root = write_voc(tmp_path)
    dm = make("voc21", root)
    dm.setup()
    label_path = Path(dm.dataset.samples[0][1])
    Image.open(label_path).convert("RGB").save(label_path)
    assert_data_error(lambda: dm.dataset[0], label_path, "single-channel")


def test_truncated_image(tmp_path):
    from torch._utils import ExceptionWrapper

    root = write_voc(tmp_path)
    dm = make("voc21", root)
    dm.setup()
    image_path = Path(dm.dataset.samples[1][0])
    data = image_path.read_bytes()
    image_path.write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(image_path)) is not None  # OpenCV alone would not notice
    assert_data_error(lambda: dm.dataset[1], image_path, "truncated")
    assert_data_error(lambda: list(dm.test_dataloader()), image_path)
    # From a DataLoader worker the error comes back through torch's ExceptionWrapper: still a
    # DataError naming the file (a real worker run costs torch's 5 s shutdown timeout after an error).
    try:
        dm.dataset[1]
    except DataError:
        wrapped = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 0")
    assert_data_error(wrapped.reraise, image_path, "truncated")


def test_truncated_label(tmp_path):
    root = write_voc(tmp_path)
    dm = make("voc21", root)
    dm.setup()
    label_path = Path(dm.dataset.samples[0][1])
    data = label_path.read_bytes()
    label_path.write_bytes(data[: len(data) // 2])
    assert_data_error(lambda: dm.dataset[0], label_path)


def test_vocabulary_count_mismatch(tmp_path, roots):
    vocab = tmp_path / "my_vocab.txt"
    vocab.write_text("\n".join(f"class {i}" for i in range(20)) + "\n\n")
    msg = assert_data_error(lambda: make("voc21", roots["voc21"], names_file=str(vocab)).setup(), vocab, "20", "21")
    assert "\n" not in msg
    assert_data_error(lambda: make("pc459", roots["pc459"], names_file="voc21"), "voc21.txt", "459")


def test_names_file_forms(tmp_path, roots):
    vocab = tmp_path / "mine.txt"
    vocab.write_text("  bg; sky \r\n" + "\n".join(f" c{i}\t" for i in range(20)) + "\n")
    dm = make("voc21", roots["voc21"], names_file=str(vocab))
    assert dm.class_names[0] == "bg; sky" and dm.class_names[1:] == [f"c{i}" for i in range(20)]
    assert make("voc21", roots["voc21"], names_file="voc21.txt").class_names == dm.__class__(
        root=str(roots["voc21"]), scale=(2048, 336), prob_thd=0.2, names_file="voc21").class_names
    assert_data_error(lambda: make("voc21", roots["voc21"], names_file="voc_21"), "voc_21", "voc21")


def test_bad_arguments(roots):
    assert_data_error(lambda: make("voc21", roots["voc21"], scale=(2048,)), "scale")
    assert_data_error(lambda: make("voc21", roots["voc21"], stride=400), "stride")
    assert_data_error(lambda: make("voc21", roots["voc21"], prob_thd=2.0), "prob_thd")


def test_data_never_imports_the_method():
    """No module of the data imports proxyclip (at run time: tests/test_prepare.py::test_module_entry_point)."""
    for path in (REPO / "datamodules").rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+proxyclip", path.read_text(), re.M), path


# --------------------------------------------------------------------------- adding a dataset (README)

class MyDataModule(SegmentationDataModule):
    """The README's "Add a dataset" example: `images/val/<id>.jpg`, `labels/val/<id>.png` (1..4, 0 ignored)."""

    dataset_name = "my_dataset"
    num_classes = 4
    image_dir = "images/val"
    label_dir = "labels/val"
    image_suffix = ".jpg"
    label_suffix = ".png"
    split_file = None
    reduce_zero_label = True


def test_add_a_dataset(tmp_path, capsys):
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.demos.boring_classes import BoringModel

    from datamodules.prepare import main

    root = tmp_path / "my_dataset"
    rng = np.random.default_rng(7)
    for i, (h, w) in enumerate([(40, 60), (61, 33), (50, 50)]):
        (root / "images" / "val").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "val").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / "val" / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 5, (h, w), dtype=np.uint8)).save(root / "labels" / "val" / f"{i}.png")
    names = tmp_path / "my_dataset.txt"
    names.write_text("sky; cloud\nperson\ngrass\nbuilding; house\n")
    config = tmp_path / "my_dataset.yaml"
    config.write_text(f"""class_path: test_datamodules.MyDataModule
init_args:
  root: {root}
  names_file: {names}
  scale: [2048, 336]
  prob_thd: 0
""")
    cli = LightningCLI(BoringModel, SegmentationDataModule, subclass_mode_data=True, run=False,
                       save_config_callback=None, trainer_defaults={"logger": False}, args=["--data", str(config)])
    dm = cli.datamodule
    assert dm.class_names == ["sky; cloud", "person", "grass", "building; house"] and dm.crop_size == 336
    batches = list(dm.test_dataloader())
    assert [tuple(lbl.shape) for b in batches for lbl in b["labels"]] == [(40, 60), (61, 33), (50, 50)]
    assert set(np.unique(batches[0]["labels"][0].numpy())) <= {0, 1, 2, 3, 255}
    assert main(["check", str(root), "--dataset", "test_datamodules.MyDataModule"]) == 0
    assert "OK (3 images" in capsys.readouterr().out


def test_loader_settings_follow_the_device(monkeypatch):
    from types import SimpleNamespace

    from datamodules import loader

    monkeypatch.setattr(loader, "usable_cpus", lambda: 16)
    gpu = SimpleNamespace(strategy=SimpleNamespace(root_device=SimpleNamespace(type="cuda")), num_devices=1)
    cpu = SimpleNamespace(strategy=SimpleNamespace(root_device=SimpleNamespace(type="cpu")), num_devices=1)
    assert loader.loader_settings(None, None, None, None, 46) == {"batch_size": 1, "num_workers": 0, "pin_memory": False}
    assert loader.loader_settings(cpu, None, None, None, 46) == {"batch_size": 1, "num_workers": 0, "pin_memory": False}
    assert loader.loader_settings(gpu, None, None, None, 46) == {"batch_size": 8, "num_workers": 8, "pin_memory": True}
    assert loader.loader_settings(gpu, None, None, None, 459)["batch_size"] == 3       # PC459
    assert loader.loader_settings(gpu, None, None, None, 847)["batch_size"] == 1       # ADE847
    four = SimpleNamespace(strategy=gpu.strategy, num_devices=4)                         # 4 processes share 16 CPUs
    assert loader.loader_settings(four, None, None, None, 46)["num_workers"] == 3
    assert loader.loader_settings(gpu, 2, 0, False, 46) == {"batch_size": 2, "num_workers": 0, "pin_memory": False}


class _Zeros(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.zeros(64, 64)


_WORKERS = """
import json, sys, torch
sys.path[:0] = sys.argv[1:3]
from datamodules import DataError
from datamodules.loader import check_worker_sockets
from test_datamodules import _Zeros
try:
    check_worker_sockets(1)
    refusal = ""
except DataError as error:
    refusal = str(error)
try:
    delivered = sum(1 for _ in torch.utils.data.DataLoader(_Zeros(), num_workers=1, timeout=5)) == 2
except RuntimeError:   # the DataLoader's timeout: the worker's batches never came
    delivered = False
print(json.dumps({"refusal": refusal, "delivered": delivered}))
"""


def _workers_with(temp: Path) -> dict:
    """What check_worker_sockets says, and whether a 1-worker DataLoader delivers (5 s to do so), with TMPDIR `temp`."""
    result = subprocess.run([sys.executable, "-c", _WORKERS, str(Path(__file__).parent), str(Path(__file__).parents[1])],
                            env={**os.environ, "TMPDIR": str(temp)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.subprocess
@pytest.mark.skipif(sys.platform != "linux", reason="Unix-socket hand-over of worker batches is Linux's default")
def test_a_temporary_folder_too_long_for_worker_sockets_is_refused():
    """DataLoader workers hang on a temporary folder too long for their sockets: the check refuses exactly those (a
    folder at the limit delivers and passes, one byte more hangs and is refused, with the fix)."""
    from datamodules import loader

    base = Path(tempfile.mkdtemp(prefix="pc-"))
    try:
        suffix = subprocess.run([sys.executable, "-c", "import multiprocessing.connection as c, tempfile; "
                                 "print(len(c.arbitrary_address('AF_UNIX')) - len(tempfile.gettempdir()))"],
                                env={**os.environ, "TMPDIR": str(base)}, capture_output=True, text=True, check=True)
        limit = loader.UNIX_SOCKET_PATH_MAX - int(suffix.stdout)       # the longest temporary folder that works
        at_limit = base / ("d" * (limit - len(str(base)) - 1))
        over = base / ("e" * (limit - len(str(base))))
        at_limit.mkdir(), over.mkdir()
        assert len(str(at_limit)) == limit and len(str(over)) == limit + 1
        assert _workers_with(at_limit) == {"refusal": "", "delivered": True}
        beyond = _workers_with(over)
        assert not beyond["delivered"]
        for fragment in (str(over), f"at most {limit} bytes", "TMPDIR", "--data.init_args.num_workers 0"):
            assert fragment in beyond["refusal"], (fragment, beyond["refusal"])
    finally:
        shutil.rmtree(base)


def test_a_missing_vocabulary_file_is_refused_not_read_as_a_class(tmp_path, monkeypatch):
    """A vocabulary value that names a file which is not there is refused; it never becomes one inline class. A class
    name with a slash is a class: "AC/DC", "sky; cloud/haze" (";" separates synonyms, "," classes: no file)."""
    from datamodules.image_folder import resolve_vocabulary

    monkeypatch.chdir(tmp_path)
    (tmp_path / "vocab").mkdir()
    assert_data_error(lambda: resolve_vocabulary(str(tmp_path / "classes.txt")), "classes.txt does not exist")
    for missing in ("vocab/animals", "./animals", str(tmp_path / "elsewhere" / "animals"), "~/no such folder/animals"):
        assert_data_error(lambda: resolve_vocabulary(missing), f"{missing} does not exist")   # a path: its folder is there, or it says so
    assert resolve_vocabulary("person") == ["person"] and resolve_vocabulary("cat, dog/puppy") == ["cat", "dog/puppy"]
    assert resolve_vocabulary("AC/DC") == ["AC/DC"] and resolve_vocabulary("sky; cloud/haze") == ["sky; cloud/haze"]
    assert resolve_vocabulary("sky; cloud/haze, AC/DC", background="wall/floor") == ["wall/floor", "sky; cloud/haze", "AC/DC"]


def test_both_kinds_of_datamodule_refuse_a_bad_numerics_alike(tmp_path, roots):
    """One check of `numerics` (datamodules/checks.py) for the benchmarks and for predict's images: one message."""
    from datamodules.image_folder import ImageFolderDataModule

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    benchmark = assert_data_error(lambda: make("voc21", roots["voc21"], numerics="exact"), "'exact'")
    folder = assert_data_error(lambda: ImageFolderDataModule(str(image), "cat, dog", numerics="exact"), "'exact'")
    assert benchmark == folder == (
        "numerics must be 'original' (every input as the method's original harness computes it, the benchmarks' "
        "protocol) or 'defined' (the weights' own statistics on x / 255, no NaN from an emptied proxy-attention row; "
        "predict's default); got 'exact'.")
