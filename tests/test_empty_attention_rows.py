"""A proxy-attention row that masking empties (every S' < 0: a uniform crop), docs/method.md §3.4.

numerics "original" (the benchmarks): the whole row is masked as the original masks it (ProxyCLIP
open_clip/transformer.py:573-578), the softmax gives NaN, the pixel is class 0, and the run counts such pixels
(metrics.json `nan_pixels`, one line at the end). numerics "defined" (predict, the library): the row is left
unmasked, its plain softmax of S'.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_CONFIG, VOCAB, random_image
from fake_datasets import WRITERS
from proxyclip import SegmentationMetric, build_segmentor
from proxyclip.methods.proxyclip.proxy_attention import proxy_attention_weights


def test_hand_case_uniform_crop():
    """Identical tokens: S = 1 everywhere, S' = 3 * (1 - 1.2) < 0 in every row."""
    feats = torch.ones(1, 4, 2, 3)
    assert torch.isnan(proxy_attention_weights(feats.clone(), 1.2, 3.0, "nan")).all()
    unmasked = proxy_attention_weights(feats.clone(), 1.2, 3.0, "unmasked")
    assert torch.equal(unmasked, torch.full((1, 6, 6), 1 / 6))          # softmax of a constant row


def test_hand_case_one_empty_row():
    """A zero token: its row of S is 0, so S' = -gamma * beta * mean(S) < 0 everywhere in it; the others keep
    their diagonal. Only that row is empty: NaN under "nan", its plain softmax of S' (uniform) under "unmasked";
    every other row is the same under both."""
    feats = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 0.0], [0.6, 0.8]]).T.reshape(1, 2, 2, 2)
    original = proxy_attention_weights(feats.clone(), 1.2, 3.0, "nan")[0]
    defined = proxy_attention_weights(feats.clone(), 1.2, 3.0, "unmasked")[0]
    assert torch.isnan(original[2]).all() and not torch.isnan(original[[0, 1, 3]]).any()
    assert torch.equal(defined[2], torch.full((4,), 0.25))
    assert torch.equal(defined[[0, 1, 3]], original[[0, 1, 3]])
    # by hand, row 0: S = [1, 0.8, 0, 0.6], mean(S) = 6.4 / 16 = 0.4, S' = 3 * (S - 0.48): keys 0, 1 and 3 kept
    s = 3 * (torch.tensor([1.0, 0.8, 0.6]) - 1.2 * 0.4)
    assert torch.allclose(defined[0, [0, 1, 3]], s.softmax(0)) and defined[0, 2] == 0


def test_uniform_image_through_the_segmentor():
    """A uniform image: every crop's rows are empty with the tiny model's VFM; "original" gives NaN logits and class 0
    everywhere (as the original), "defined" a finite, defined result."""
    torch.manual_seed(0)
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, crop_size=112, stride=56, numerics="original").eval()
    image = torch.full((3, 100, 130), 140, dtype=torch.uint8)
    probs = seg.predict_probabilities(image)
    assert torch.isnan(probs).all() and torch.equal(seg.decide(probs), torch.zeros(100, 130, dtype=torch.long))
    seg.numerics = "defined"
    probs = seg.predict_probabilities(image)
    assert torch.isfinite(probs).all() and ((probs > 0) & (probs < 1)).all()
    labels = seg.segment(image)
    assert torch.equal(labels, seg.decide(probs))


def test_one_batch_method_gives_labels_and_nan_masks():
    """`labels_and_nan_masks`, the one batch path of `test`'s step, of `segment_batch` and of the device check's
    no-host-sync check: per image the labels and the pixels decided on NaN logits (a NaN logit makes every class
    NaN, so one class's probabilities say it)."""
    from proxyclip.shell.module import ProxyCLIPModule

    torch.manual_seed(0)
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, crop_size=112, stride=56, numerics="original").eval()
    part = random_image(100, 300, 7)
    part[:, :, :170] = 140                           # the crops over the uniform left part have only empty rows
    images, sizes = [part, random_image(90, 120, 8)], [(100, 300), (45, 60)]
    results = seg.labels_and_nan_masks(images, sizes)
    for (labels, nan), image, size in zip(results, images, sizes):
        probs = seg.probabilities(seg([image], [size])[0], image)
        assert torch.equal(nan, probs.isnan().any(dim=0)) and torch.equal(labels, seg.decide(probs))
        assert labels.shape == nan.shape == size and nan.dtype == torch.bool
    assert 0 < int(results[0][1].sum()) < 100 * 300 and not results[1][1].any()
    assert all(torch.equal(a, labels) for a, (labels, _) in zip(seg.segment_batch(images, sizes), results))
    module = ProxyCLIPModule(seg)                    # test_step outside a trainer: the same labels, the same count
    preds = module.test_step({"images": images, "labels": [torch.zeros(size, dtype=torch.long) for size in sizes]}, 0)
    assert all(torch.equal(pred, labels) for pred, (labels, _) in zip(preds, results))
    assert int(module.metric.compute()["nan_pixels"]) == int(results[0][1].sum())


def test_the_metric_counts_nan_pixels_across_updates():
    metric = SegmentationMetric(3)
    pred, label = torch.zeros(4, 5, dtype=torch.long), torch.ones(4, 5, dtype=torch.long)
    metric.update(pred, label, torch.ones(4, 5, dtype=torch.bool))
    metric.update(pred, label, torch.eye(4, 5, dtype=torch.bool))
    metric.update(pred, label)
    assert int(metric.compute()["nan_pixels"]) == 24


@pytest.mark.parametrize("numerics", ["original", "defined"])
def test_the_cli_counts_and_reports_nan_pixels(numerics, tmp_path, capsys):
    """`test` on fake VOC whose first image is one colour: under "original" (the benchmark's) every pixel of that
    image is counted in metrics.json and in the run's last line; under "defined" none is NaN."""
    from proxyclip.commands.cli import cli_main

    root = WRITERS["voc21"](tmp_path / "data", n=2)
    first = root / "JPEGImages" / "2007_000000.jpg"
    width, height = Image.open(first).size
    Image.fromarray(np.full((height, width, 3), (90, 140, 200), np.uint8)).save(first, quality=95)
    extra = [] if numerics == "original" else ["--data.init_args.numerics", "defined"]
    cli = cli_main(["test", "--config", "configs/voc21.yaml", "--model", str(TINY_CONFIG), "--data.init_args.root", str(root),
                    "--model.output_dir", str(tmp_path / "out"), "--trainer.logger", "false", *extra])
    assert cli.model.segmentor.numerics == numerics
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    expected = height * width if numerics == "original" else 0
    assert report["nan_pixels"] == expected and report["numerics"] == numerics
    assert report["pixel_statistics"]["clip_mean"] == [0.48145466, 0.4578275, 0.40821073]
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Results written to"))
    if numerics == "original":   # where NaN can happen, the results' last line says how often it did
        assert lines[at + 1] == (f"{expected} pixels had NaN logits and were labelled class 0 (numerics: original; an "
                                 "emptied proxy-attention row, docs/method.md §3.4)")
    else:
        assert not any("NaN" in line for line in lines)


def test_the_nan_line_is_printed_where_nan_can_happen_or_did():
    """Only ProxyCLIP under numerics "original" can empty a row; any other run says nothing unless a pixel was NaN."""
    from proxyclip.shell.results import nan_line

    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, numerics="original")
    assert seg.nan_possible and nan_line({"nan_pixels": 0, "numerics": "original"}, seg.nan_possible).startswith("0 pixels")
    seg.numerics = "defined"
    assert not seg.nan_possible and nan_line({"nan_pixels": 0, "numerics": "defined"}, seg.nan_possible) is None
    assert nan_line({"nan_pixels": 1, "numerics": "defined"}, False).startswith("1 pixel had NaN logits and was")
    sclip = build_segmentor(TINY_CONFIG, class_names=VOCAB, method="sclip", method_kwargs=None, vfm=None,
                            vfm_pretrained=None, vfm_kwargs=None, vfm_mean=None, vfm_std=None, numerics="original")
    assert not sclip.nan_possible
