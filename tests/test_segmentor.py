"""The segmentor end to end on tiny random models: batch invariance, decision, library API, bad input."""
import numpy as np
import pytest
import torch
from PIL import Image

from proxyclip import ProxyCLIPError, build_segmentor
from proxyclip.method.sliding_window import pad_to_multiple, sliding_windows
from conftest import REPO_ROOT, TINY_CONFIG, VOCAB, random_image, twin


def test_batch_invariance_with_mixed_sizes(tiny_segmentor):
    images = [random_image(90, 130, 0), random_image(200, 150, 1), random_image(60, 60, 2), random_image(112, 300, 3)]
    sizes = [(100, 140), (200, 150), (33, 47), (112, 300)]
    batch = tiny_segmentor(images, sizes)
    for image, size, logits in zip(images, sizes, batch):
        alone = tiny_segmentor([image], [size])[0]
        assert logits.shape == (len(tiny_segmentor.queries), *size)
        torch.testing.assert_close(logits, alone, atol=1e-5, rtol=0)


def test_chunking_does_not_change_results(tiny_segmentor):
    image = random_image(150, 260, 4)
    saved = tiny_segmentor.crop_batch_size
    try:
        tiny_segmentor.crop_batch_size = 1
        one = tiny_segmentor([image])[0]
        tiny_segmentor.crop_batch_size = 64
        many = tiny_segmentor([image])[0]
    finally:
        tiny_segmentor.crop_batch_size = saved
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)


def test_slide_equals_manual_windows(tiny_segmentor):
    """The canvas is the per-window padded-crop logits, cropped back, summed and divided by the counts."""
    seg = tiny_segmentor
    image = random_image(130, 170, 5)
    x = (image.float() / 255 - seg.clip_mean) / seg.clip_std
    canvas = torch.zeros(len(seg.queries), 130, 170)
    count = torch.zeros(1, 130, 170)
    for y1, y2, x1, x2 in sliding_windows(130, 170, seg.crop_size, seg.stride):
        crop = x[:, y1:y2, x1:x2]
        left, right, top, bottom = pad_to_multiple(*crop.shape[-2:], seg.pad_multiple)
        logits = seg.crop_logits(torch.nn.functional.pad(crop, (left, right, top, bottom))[None])[0]
        canvas[:, y1:y2, x1:x2] += logits[:, top:top + y2 - y1, left:left + x2 - x1]
        count[:, y1:y2, x1:x2] += 1
    torch.testing.assert_close(seg([image])[0], canvas / count, atol=1e-5, rtol=0)


def test_decision_max_over_synonyms_and_threshold(tiny_segmentor):
    seg = tiny_segmentor
    logits = torch.randn(len(seg.queries), 5, 6)
    probs = seg.class_probabilities(logits)
    full = (logits * 40).softmax(0)
    q2c = seg.query_to_class.tolist()
    for c in range(seg.num_classes):
        expected = torch.stack([full[q] for q in range(len(q2c)) if q2c[q] == c]).amax(0)
        torch.testing.assert_close(probs[c], expected)
    saved = seg.prob_thd
    try:
        seg.prob_thd = 0.9
        pred = seg.decide(probs)
        assert torch.equal(pred[probs.amax(0) < 0.9], torch.zeros_like(pred[probs.amax(0) < 0.9]))
        seg.prob_thd = 0.0
        assert torch.equal(seg.decide(probs), probs.argmax(0))
    finally:
        seg.prob_thd = saved


def test_library_api(tiny_segmentor):
    seg = tiny_segmentor
    array = random_image(70, 90, 6).permute(1, 2, 0).numpy()
    labels = seg.segment(array)
    assert labels.shape == (70, 90) and labels.dtype == torch.int64 and int(labels.max()) < len(VOCAB)
    assert seg.predict_probabilities(Image.fromarray(array)).shape == (len(VOCAB), 70, 90)
    assert torch.equal(seg.segment(Image.fromarray(array).convert("L")), seg.segment(np.asarray(Image.fromarray(array).convert("L"))))
    assert seg.dense_features(torch.rand(2, 3, 112, 168)).shape == (2, 32, 14, 21)
    for name in ("method", "method_options", "logit_scale", "prob_thd", "crop_size", "stride"):
        assert hasattr(seg, name)
    assert seg.method_options == {"beta": 1.2, "gamma": 3.0}
    assert seg.clip.__class__.__module__.startswith("open_clip")


def test_text_embeddings_computed_once(tiny_segmentor):
    first = tiny_segmentor.text_embeddings()
    assert tiny_segmentor.text_embeddings() is first
    assert torch.allclose(first.norm(dim=-1), torch.ones(len(tiny_segmentor.queries)))


@pytest.mark.parametrize("names, match", [([], "empty"), (["sky", ""], "empty name"), (["sky; ; cloud", "x"], "empty name")])
def test_bad_vocabulary(tiny_segmentor, names, match):
    with pytest.raises(ProxyCLIPError, match=match):
        build_segmentor(TINY_CONFIG, class_names=names)


def test_bad_geometry_and_names():
    with pytest.raises(ProxyCLIPError, match="crop_size=4"):
        build_segmentor(TINY_CONFIG, crop_size=4)
    with pytest.raises(ProxyCLIPError, match="stride"):
        build_segmentor(TINY_CONFIG, crop_size=112, stride=200)
    with pytest.raises(ProxyCLIPError, match="Did you mean.*dino_vitb8"):
        build_segmentor(TINY_CONFIG, vfm="dino_vitb9")
    with pytest.raises(ProxyCLIPError, match="ViT-B-16"):
        build_segmentor(TINY_CONFIG, clip_model="ViT-B-61")
    with pytest.raises(ProxyCLIPError, match="beta"):
        build_segmentor(TINY_CONFIG, betta=1.0)


def test_bad_image(tiny_segmentor):
    with pytest.raises(ProxyCLIPError, match="RGB image"):
        tiny_segmentor.segment(np.zeros((4, 5, 7), dtype=np.float64))


def test_build_segmentor_finds_a_shipped_config_from_any_folder(tmp_path, monkeypatch):
    """The README's `build_segmentor("configs/model/...")` works outside the checkout; a local file of that path wins."""
    monkeypatch.chdir(tmp_path)
    seg = build_segmentor("configs/model/tiny_random.yaml", class_names=VOCAB)
    assert seg.vfm is not None and seg.num_classes == len(VOCAB)
    (tmp_path / "configs" / "model").mkdir(parents=True)
    (tmp_path / "configs" / "model" / "tiny_random.yaml").write_text(
        (REPO_ROOT / "configs/model/tiny_random.yaml").read_text().replace("beta: 1.2", "beta: 0.7"))
    assert build_segmentor("configs/model/tiny_random.yaml", class_names=VOCAB).method_options["beta"] == 0.7


def test_a_bad_vocabulary_is_refused_before_any_model_is_built(tmp_path):
    # the checkpoint does not exist: had CLIP been built first, that would be the error
    with pytest.raises(ProxyCLIPError, match="names the same class more than once"):
        build_segmentor(TINY_CONFIG, class_names=["cat", "dog", "Cat"], clip_pretrained=str(tmp_path / "absent.bin"),
                        clip_quick_gelu=True, clip_mean=[0.5] * 3, clip_std=[0.5] * 3)


def test_the_readme_names_every_option_another_method_refuses():
    """README's Baselines section lists the options refused for a method that does not read them (method_options.py)."""
    from proxyclip.method.method_options import VFM_OPTIONS

    readme = (REPO_ROOT / "README.md").read_text()
    baselines = readme[readme.index("## Baselines"):]
    baselines = " ".join(baselines[:baselines.index("\n## ", 1)].split())
    refused = baselines[baselines.index("The shared VFM options"):baselines.index("are refused for a method")]
    assert [option for option in VFM_OPTIONS if f"`{option}`" not in refused] == []


def test_a_methods_own_options_are_method_kwargs_with_its_defaults():
    """method_kwargs are checked against the method's typed options before any model is built (the checkpoint below
    does not exist); unset ones are its defaults, and the values run (issue 20)."""
    from proxyclip.method.method_options import check_method_kwargs

    assert check_method_kwargs("proxyclip", None) == {"beta": 1.2, "gamma": 3.0}
    assert check_method_kwargs("proxyclip", {"beta": 1}) == {"beta": 1.0, "gamma": 3.0}
    assert check_method_kwargs("naclip", {}) == {"std": 5.0} and check_method_kwargs("sclip", None) == {}
    assert check_method_kwargs("clearclip", {"similarity": "query-key"}) == {"similarity": "query-key"}
    absent = dict(clip_pretrained="/nonexistent/absent.bin", clip_quick_gelu=True, clip_mean=[0.5] * 3, clip_std=[0.5] * 3)
    with pytest.raises(ProxyCLIPError, match=r"the proxyclip method's beta takes a float, not 'high'\. The proxyclip "
                                             r"method's options are beta \(float, default 1\.2\), gamma \(float, default 3\.0\)"):
        build_segmentor(TINY_CONFIG, method_kwargs={"beta": "high"}, **absent)
    with pytest.raises(ProxyCLIPError, match=r"std is naclip's option"):
        build_segmentor(TINY_CONFIG, method_kwargs={"std": 5.0}, **absent)
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, method_kwargs={"gamma": 2.0})
    assert seg.method_options == {"beta": 1.2, "gamma": 2.0} and (seg.last_block.beta, seg.last_block.gamma) == (1.2, 2.0)


def test_proxyclip_with_its_default_method_kwargs_computes_as_without_them(tiny_segmentor):
    """The presets' method_kwargs {beta: 1.2, gamma: 3.0} are ProxyCLIP's defaults: the same numbers as none given."""
    image = random_image(80, 100, 3)
    unset = twin(tiny_segmentor, method_kwargs=None)
    assert tiny_segmentor.method_options == unset.method_options == {"beta": 1.2, "gamma": 3.0}
    assert torch.equal(tiny_segmentor.predict_probabilities(image), unset.predict_probabilities(image))
    assert not torch.equal(tiny_segmentor.predict_probabilities(image),
                           twin(tiny_segmentor, method_kwargs={"gamma": 1.0}).predict_probabilities(image))


def test_the_old_spelling_of_a_methods_options_says_how_to_give_them():
    with pytest.raises(ProxyCLIPError, match=r"beta is an option of the proxyclip, trident and corrclip methods, not of the segmentor: .*"
                                             r"method_kwargs: \{beta: 1\.2, gamma: 3\.0\}"):
        build_segmentor(TINY_CONFIG, beta=1.0)


def test_the_former_name_is_the_same_class():
    import proxyclip
    from proxyclip.method import ProxyCLIPSegmentor, TrainingFreeSegmentor

    assert proxyclip.ProxyCLIPSegmentor is proxyclip.TrainingFreeSegmentor is ProxyCLIPSegmentor is TrainingFreeSegmentor
    assert TrainingFreeSegmentor.__name__ == "TrainingFreeSegmentor"
