"""CASS's randomised SVD draws (proxyclip/methods/cass/README.md "The SVD's random draws"): `svd_draws` "per_crop" (the
default) reseeds every crop; "one_stream" draws one stream crop after crop, as the original's run seeded once
(configs/base_config.py:35, seed 42) draws in dataset order. Checked against the float64 loop of test_cass.py."""
import pytest
import torch

from proxyclip.errors import ProxyCLIPError
from test_cass import clip_normalised, reference_crop, tiny_cass

OPTIONS = dict(global_semantics_weight=0.3, mean_vector_weight=0.5, stretch_singular_values=True,
               global_vector="image", seed=42)
REFERENCE = dict(gsw=0.3, mvw=0.5, stretch=True, h_threshold=0.0, seed=None)
REFERENCE["global"] = "image"
WINDOWS = [(0, 224, 0, 224), (0, 224, 112, 336)]    # a 224 x 336 image in 224 / 112 windows (cass_segmentor.py:226-238)


def images(n):
    g = torch.Generator().manual_seed(4)
    return [(torch.rand(3, 224, 336, generator=g) * 256).to(torch.uint8) for _ in range(n)]


def test_one_stream_is_the_stream_seeded_once_and_drawn_in_order():
    """Two segmentations in one process draw one stream: the float64 loop that seeds once with 42 and runs the
    windows of both images in order (each window's heads in order) gives the same logits; the global generator is
    left as it was."""
    seg = tiny_cass(numerics="original", method_kwargs={**OPTIONS, "svd_draws": "one_stream"}).double()
    pictures = images(2)
    state = torch.random.get_rng_state()
    with torch.no_grad():
        got = [seg([picture])[0] for picture in pictures]
    assert torch.equal(torch.random.get_rng_state(), state)
    q = seg.text_embeddings().shape[0]
    with torch.no_grad():
        torch.manual_seed(42)                            # the original's run: seeded once, then only the SVDs draw
        for picture, result in zip(pictures, got):
            x = clip_normalised(picture)
            canvas, count = torch.zeros(q, 224, 336, dtype=torch.float64), torch.zeros(1, 224, 336, dtype=torch.float64)
            for y1, y2, x1, x2 in WINDOWS:
                canvas[:, y1:y2, x1:x2] += reference_crop(seg, x[:, y1:y2, x1:x2], x, REFERENCE)
                count[:, y1:y2, x1:x2] += 1
            torch.testing.assert_close(result.double(), canvas / count, rtol=1e-6, atol=1e-7)   # the canvas is float32


def test_one_stream_differs_from_per_crop_reseeding_from_the_second_crop_on():
    """Seeded with 42 both: the first crop draws the same in both modes, the second crop does not (the stream has
    moved on, the per-crop mode reseeds it)."""
    stream = tiny_cass(numerics="original", method_kwargs={**OPTIONS, "svd_draws": "one_stream"})
    per_crop = tiny_cass(numerics="original", method_kwargs=OPTIONS)
    assert per_crop.last_block.svd_draws == "per_crop"            # the default
    x = clip_normalised(images(1)[0])
    crops = [x[None, :, y1:y2, x1:x2] for y1, y2, x1, x2 in WINDOWS]
    with torch.no_grad():
        first, second = (stream.crop_logits(crop, [x]) for crop in crops)
        assert torch.equal(first, per_crop.crop_logits(crops[0], [x]))
        assert (second - per_crop.crop_logits(crops[1], [x])).abs().max() > 1e-4   # other draws, another rank-10 SVD


def test_one_stream_is_refused_in_several_processes(monkeypatch):
    """Under torch.distributed with 2 processes each would start its own stream: refused at the first crop, in one
    paragraph naming the value and the fixes; the per-crop default runs."""
    picture = images(1)[0][:, :, :224]                     # one window
    stream = tiny_cass(method_kwargs={"svd_draws": "one_stream", "seed": 42})
    per_crop = tiny_cass()
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    with torch.no_grad():
        with pytest.raises(ProxyCLIPError, match=r"svd_draws 'one_stream' continues one random stream .* this run has "
                                                 r"2 processes: .*--trainer\.devices 1\), or use svd_draws 'per_crop'"):
            stream([picture])
        assert per_crop([picture])[0].shape[-2:] == (224, 224)


def test_svd_draws_values_are_refused_in_one_paragraph():
    from proxyclip.method.method_options import check_method_kwargs

    with pytest.raises(ProxyCLIPError, match=r"the cass method's svd_draws takes 'per_crop' or 'one_stream', "
                                             r"not 'once'"):
        check_method_kwargs("cass", {"svd_draws": "once"})
