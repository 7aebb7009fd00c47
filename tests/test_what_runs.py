"""What the CLI parses is what runs: linked values given on the model side, every spelling of the method, another
method's options, a model config given as the benchmark (issue 19, items 1, 2, 3, 15)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO_ROOT, TINY_CLIP, TINY_CONFIG, VOCAB
from fake_datasets import write_voc

TINY = str(TINY_CONFIG)
SCLIP_VOC21 = REPO_ROOT / "proxyclip" / "methods" / "sclip" / "protocol" / "voc21.yaml"


def refused(args, capsys):
    """The one `error:` paragraph of a refused command line (exit code 2, no traceback; the line naming the method's
    protocol file may come before it)."""
    from proxyclip.commands.cli import cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if "own voc21 values" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def resolved(args, capsys=None):
    """(the config `--print_config` shows, the lines on stderr): parsing only, in this process."""
    from proxyclip.commands.eval_all import resolved_config

    code, printed, errors = resolved_config(args)
    assert code == 0, errors
    return yaml.safe_load(printed), [line for line in errors.splitlines() if line.strip()]


# --- item 1: a linked segmentor value given on the model side -------------------------------------------------------
@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return write_voc(tmp_path_factory.mktemp("voc") / "data", n=2)


def run_test(voc, out, *extra):
    from proxyclip.commands.cli import cli_main

    cli_main(["test", "--config", "configs/voc21.yaml", "--model", TINY, "--data.init_args.root", str(voc),
              "--model.output_dir", str(out), "--trainer.logger", "false", "--model.num_panels", "0", *extra])
    return json.loads((out / "metrics.json").read_text())


def test_a_model_side_prob_thd_runs_as_the_data_option(voc, tmp_path):
    """`--model.segmentor.init_args.prob_thd 0.1` counts exactly as `--data.init_args.prob_thd 0.1` (the benchmark's is
    0.2), and the run's config shows that one value."""
    default = run_test(voc, tmp_path / "default")
    data_side = run_test(voc, tmp_path / "data", "--data.init_args.prob_thd", "0.1")
    model_side = run_test(voc, tmp_path / "model", "--model.segmentor.init_args.prob_thd", "0.1")
    assert data_side["counts"] != default["counts"]                      # the value matters on these images
    assert model_side["counts"] == data_side["counts"]
    assert model_side["config"]["data"]["init_args"]["prob_thd"] == 0.1


def test_a_model_side_prob_thd_predicts_as_the_data_option(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photos / "a.png")
    from proxyclip.commands.cli import cli_main

    labels = {}
    for name, extra in (("default", []), ("data", ["--data.init_args.prob_thd", "0.9"]),
                        ("model", ["--model.segmentor.prob_thd", "0.9"])):
        cli_main(["predict", "--config", "configs/demo.yaml", "--model", TINY, "--data.init_args.inputs", str(photos),
                  "--data.init_args.vocabulary", "sky, grass, horse, wall", "--prediction_writer.output_dir",
                  str(tmp_path / name), "--trainer.logger", "false", *extra])
        labels[name] = np.asarray(Image.open(tmp_path / name / "a_labels.png"))
    assert not np.array_equal(labels["data"], labels["default"])
    assert np.array_equal(labels["model"], labels["data"])


@pytest.mark.parametrize("order", ["data first", "model first"])
def test_a_conflicting_pair_is_refused(order, capsys):
    pair = [["--data.init_args.prob_thd", "0.3"], ["--model.segmentor.init_args.prob_thd", "0.9"]]
    pair = pair if order == "data first" else pair[::-1]
    line = refused(["test", "--config", "configs/voc21.yaml", "--model", TINY, *pair[0], *pair[1], "--print_config"], capsys)
    assert "--data.init_args.prob_thd 0.3" in line and "--model.segmentor.init_args.prob_thd 0.9" in line
    assert "Give one value, on the data side" in line


def test_a_model_file_value_under_a_later_protocol_is_refused(tmp_path, capsys):
    """An SCLIP model file with crop_size 448, and SCLIP's VOC21 protocol (crop 224) added after it: refused."""
    preset = yaml.safe_load((REPO_ROOT / "configs/model/sclip_vitb16.yaml").read_text())
    preset["segmentor"].update(clip_model=TINY_CLIP, clip_pretrained=None, crop_size=448)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(preset))
    line = refused(["test", "--config", "configs/voc21.yaml", "--model", str(tmp_path / "mine.yaml"), "--print_config"], capsys)
    assert f"--model {tmp_path / 'mine.yaml'} sets the segmentor's crop_size to 448" in line
    assert f"--config {SCLIP_VOC21} sets the data's crop_size to 224 after it" in line


@pytest.mark.parametrize("flag, value, needle", [
    ("--model.segmentor.init_args.class_names", "[cat, dog]", "--data.init_args.names_file"),
    ("--model.ignore_index", "3", "--data.init_args.legacy_ignore_255"),
    ("--model.background_name", "sky", "--data.init_args.background"),
    ("--model.dataset_name", "mine", "a class attribute of your subclass"),
])
def test_linked_values_the_data_cannot_take_are_refused(flag, value, needle, capsys):
    line = refused(["test", "--config", "configs/voc21.yaml", "--model", TINY, flag, value], capsys)
    assert needle in line and "not callable" not in line


def test_every_link_target_defaults_to_none():
    """A linked value that is not given stays None on the model side: it is never mistaken for a given one."""
    import inspect

    from proxyclip.commands.cli import LINKS
    from proxyclip.method.segmentor import TrainingFreeSegmentor

    parameters = inspect.signature(TrainingFreeSegmentor.__init__).parameters
    for target in LINKS.values():
        if target.startswith("model.segmentor.init_args."):
            assert parameters[target.rsplit(".", 1)[1]].default is None, target


# --- item 2: the method's protocol, from the parsed configuration ---------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A model file without any method's own options, and a tiny SCLIP preset, and a whole config naming SCLIP."""
    folder = tmp_path_factory.mktemp("models")
    (folder / "plain.yaml").write_text(yaml.safe_dump({"segmentor": {"clip_model": TINY_CLIP, "clip_pretrained": None}}))
    (folder / "sclip.yaml").write_text(yaml.safe_dump({"segmentor": {"clip_model": TINY_CLIP, "clip_pretrained": None,
                                                                     "method": "sclip"}}))
    (folder / "whole.yaml").write_text(yaml.safe_dump({
        "model": {"segmentor": {"clip_model": TINY_CLIP, "clip_pretrained": None, "method": "sclip"}},
        "data": str(REPO_ROOT / "configs/data/voc21.yaml")}))
    return folder


SPELLINGS = {
    "method flag": ["--model", "{m}/plain.yaml", "--model.segmentor.method", "sclip"],
    "init_args flag": ["--model", "{m}/plain.yaml", "--model.segmentor.init_args.method", "sclip"],
    "segmentor inline": ["--model", "{m}/plain.yaml", "--model.segmentor", '{{"method": "sclip"}}'],
    "model file": ["--model", "{m}/sclip.yaml"],
    "model inline": ["--model", json.dumps({"segmentor": {"clip_model": TINY_CLIP, "method": "sclip"}}).replace("{", "{{").replace("}", "}}")],
}


@pytest.mark.parametrize("spelling", [*SPELLINGS, "whole config"])
def test_every_spelling_of_the_method_gets_its_protocol(spelling, models):
    """SCLIP's own VOC21 values (logit_scale, area_thd, prob_thd, crop, vocabulary) whatever the spelling; the one
    line that names the file; the file recorded in the run's config."""
    if spelling == "whole config":
        args = ["test", "--config", str(models / "whole.yaml")]
    else:
        args = ["test", "--config", "configs/voc21.yaml", *[a.format(m=models) for a in SPELLINGS[spelling]]]
    config, lines = resolved(args)
    assert lines == [f"sclip's own voc21 values: --config {SCLIP_VOC21}"]
    segmentor, data = config["model"]["segmentor"]["init_args"], config["data"]["init_args"]
    assert (segmentor["method"], segmentor["logit_scale"], segmentor["area_thd"]) == ("sclip", 65.0, 0.1)
    assert (data["prob_thd"], data["crop_size"], data["names_file"]) == (0.1, 224, "sclip/voc21")
    assert config["method_protocol"] == "configs/sclip/voc21.yaml"


def test_every_spelling_gives_one_key(models):
    """What an argument sets is read from the argument (layers.py), every spelling jsonargparse accepts to the one key:
    the flag with or without `init_args`, inline YAML of a section, a model file, a whole config naming its files."""
    from proxyclip.commands.layers import LayeredLine

    for spelling, tokens in SPELLINGS.items():
        line = LayeredLine(["test", *[token.format(m=models) for token in tokens]])
        assert line.last("model.segmentor.init_args.method").get("model.segmentor.method") == "sclip", spelling
    whole = LayeredLine(["test", "--config", str(models / "whole.yaml")])
    assert whole.last("model.segmentor.method").get("model.segmentor.init_args.method") == "sclip"
    data = LayeredLine(["test", "--config", str(REPO_ROOT / "configs" / "voc21.yaml"), "--data.root", "/x"])
    assert [layer.text for _, layer in data.setters("data.init_args.root")] == [
        f"--config {REPO_ROOT / 'configs' / 'voc21.yaml'}", "--data.root /x"]
    assert data.files[0].file_of("data.init_args.root").name == "voc21.yaml"   # the file `data:` names


def test_a_command_is_settled_by_two_parses_and_no_prefix_parse(models, monkeypatch):
    """The method and the benchmark come from one parse of the command without the protocol file, the run's config
    from one more with it (issue 31 item 3); no prefix of the command is parsed (jsonargparse's parser is only
    counted, not replaced)."""
    import jsonargparse

    calls = []
    for name in ("parse_args", "parse_object"):
        def counted(self, *args, _original=getattr(jsonargparse.ArgumentParser, name), **kwargs):
            if self.prog == "proxyclip":                                  # the CLI's parser, not jsonargparse's inner ones
                calls.append(bool(kwargs.get("_skip_validation")))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(jsonargparse.ArgumentParser, name, counted)
    config, _ = resolved(["test", "--config", "configs/voc21.yaml", "--model", str(models / "plain.yaml"),
                          "--model.segmentor.method", "sclip", "--model.segmentor.init_args.prob_thd", "0.3"])
    assert config["data"]["init_args"]["prob_thd"] == 0.3 and config["method_protocol"] == "configs/sclip/voc21.yaml"
    assert calls == [False, False]


def test_values_after_the_method_still_win_and_a_saved_config_runs_as_given(models, tmp_path):
    args = ["test", "--config", "configs/voc21.yaml", "--model", str(models / "plain.yaml"), "--model.segmentor.method",
            "sclip", "--model.segmentor.init_args.logit_scale", "3", "--data.init_args.prob_thd", "0.3"]
    config, _ = resolved(args)
    assert (config["model"]["segmentor"]["init_args"]["logit_scale"], config["data"]["init_args"]["prob_thd"]) == (3, 0.3)
    assert config["data"]["init_args"]["names_file"] == "sclip/voc21"
    (tmp_path / "saved.yaml").write_text(yaml.safe_dump(config))
    again, lines = resolved(["test", "--config", str(tmp_path / "saved.yaml")])
    assert again == config                   # the protocol it records is not added over the values given after it
    assert lines == [f"sclip's own voc21 values: --config {SCLIP_VOC21}"]


def test_a_method_without_the_benchmark_says_so_and_proxyclip_says_nothing(models):
    _, lines = resolved(["test", "--config", "configs/pc459.yaml", "--model", str(models / "sclip.yaml")])
    assert len(lines) == 1 and lines[0].startswith("note: sclip defines no pc459 protocol")
    config, lines = resolved(["test", "--config", "configs/voc21.yaml", "--model", TINY])
    assert lines == [] and config["method_protocol"] is None


@pytest.mark.parametrize("model, given", [("tiny", "configs/sclip/voc21.yaml"), ("sclip", "configs/clearclip/voc21.yaml"),
                                          ("sclip", "null")])
def test_a_method_protocol_given_by_hand_is_refused(model, given, models, capsys):
    """`--method_protocol` records what the CLI added; a flag that says otherwise is refused, naming what this run's
    method and benchmark give (review 3)."""
    model = TINY if model == "tiny" else str(models / "sclip.yaml")
    line = refused(["test", "--config", "configs/voc21.yaml", "--model", model, "--method_protocol", given], capsys)
    expected = "configs/sclip/voc21.yaml" if "sclip.yaml" in model else "none"
    assert f"--method_protocol {given}" in line and f"this run's is {expected}" in line and "Leave it out" in line


def test_a_method_protocol_given_by_hand_as_the_cli_computes_it_is_accepted(models):
    config, _ = resolved(["test", "--config", "configs/voc21.yaml", "--model", str(models / "sclip.yaml"),
                          "--method_protocol", "configs/sclip/voc21.yaml"])
    assert config["method_protocol"] == "configs/sclip/voc21.yaml"
    config, _ = resolved(["test", "--config", "configs/voc21.yaml", "--model", TINY, "--method_protocol", "null"])
    assert config["method_protocol"] is None


# --- item 3: another method's options -------------------------------------------------------------------------------
def test_another_methods_options_are_refused_in_the_library():
    from proxyclip import ProxyCLIPError, build_segmentor

    no_vfm = dict(vfm=None, vfm_pretrained=None, vfm_kwargs=None, vfm_mean=None, vfm_std=None)
    with pytest.raises(ProxyCLIPError, match=r"method_kwargs \{beta: 1.2, gamma: 3.0\} cannot be given to the sclip "
                                             r"method: beta is an option of proxyclip, trident and corrclip; gamma is an option of proxyclip and trident\. The sclip method has no options"):
        build_segmentor(TINY_CONFIG, class_names=VOCAB, method="sclip", **no_vfm)   # the tiny model's method_kwargs
    with pytest.raises(ProxyCLIPError, match=r"vfm='dino_vitb8': an option of cass, corrclip, proxyclip and trident only; the naclip method"):
        build_segmentor(TINY_CONFIG, class_names=VOCAB, method="naclip", method_kwargs=None,
                        **{**no_vfm, "vfm": "dino_vitb8"})
    with pytest.raises(ProxyCLIPError, match=r"vfm_mean=\[0.485, 0.456, 0.406\], vfm_std=\[0.229, 0.224, 0.225\]: "
                                             r"these are options of cass, corrclip, proxyclip and trident only; the naclip method"):
        build_segmentor(TINY_CONFIG, class_names=VOCAB, method="naclip", method_kwargs=None, vfm_pretrained=None,
                        vfm_kwargs=None)   # the tiny model states its VFM's statistics


def test_another_methods_options_are_refused_before_the_data_is_read(capsys):
    line = refused(["test", "--config", "configs/voc21.yaml", "--model", TINY, "--model.segmentor.method", "clearclip",
                    "--data.init_args.root", "/nonexistent/VOC2012"], capsys)
    assert "options of cass, corrclip, proxyclip and trident only; the clearclip method" in line and "/nonexistent" not in line


@pytest.mark.parametrize("method, kwargs, needles", [
    ("sclip", "{beta: 1.0}", ["method_kwargs {beta: 1.0} cannot be given to the sclip method: beta is an option of "
                              "proxyclip, trident and corrclip.", "The sclip method has no options"]),
    ("naclip", "{std: big}", ["method_kwargs {std: \"big\"}: the naclip method's std takes a float, not 'big'.",
                              "options are std (float, default 5.0)"]),
    ("clearclip", "{similarity: query-value}", ["similarity takes 'query-query' or 'query-key', not 'query-value'"]),
    ("proxyclip", "{gama: 3.0}", ["gama is no method's option (did you mean gamma?)",
                                  "The proxyclip method's options are beta (float, default 1.2), gamma (float, default 3.0)"]),
])
def test_a_methods_own_options_are_checked_before_the_data_is_read(method, kwargs, needles, capsys):
    """method_kwargs against the method's own typed options (its last block's signature), one paragraph naming the
    method, the option and value, and the method's options with their types and defaults (issue 20)."""
    vfm_unset = [] if method == "proxyclip" else [token for option in ("vfm", "vfm_pretrained", "vfm_kwargs", "vfm_mean",
                                                                       "vfm_std")
                                                  for token in (f"--model.segmentor.{option}", "null")]
    line = refused(["test", "--config", "configs/voc21.yaml", "--model", TINY, "--model.segmentor.method", method,
                    *vfm_unset, "--model.segmentor.method_kwargs", kwargs, "--data.init_args.root", "/nonexistent/VOC2012"],
                   capsys)
    assert all(needle in line for needle in needles), line
    assert "/nonexistent" not in line


@pytest.mark.parametrize("args", [["--model.segmentor.beta", "1.0"], ["--model.segmentor.init_args.gamma", "2"],
                                  ["--model", "MOVED"]])
def test_the_spelling_before_method_kwargs_says_how_to_give_them(args, tmp_path, capsys):
    """beta/gamma as segmentor options (the command line, or `beta:` in a model YAML): one paragraph that gives the
    method_kwargs spelling, which works as printed."""
    import shlex

    if "MOVED" in args:
        (tmp_path / "old.yaml").write_text("segmentor:\n  beta: 1.0\n")
        args = ["--model", str(tmp_path / "old.yaml")]
    line = refused(["test", "--config", "configs/voc21.yaml", "--model", TINY, *args], capsys)
    name = "gamma" if "gamma" in args[0] else "beta"
    owners = "proxyclip, trident and corrclip" if name == "beta" else "proxyclip and trident"
    assert line.startswith(f"error: {name} is an option of the {owners} methods, not of the segmentor"), line
    suggested = line[line.index("--model.segmentor.method_kwargs"):].split(" (quoted")[0]
    assert suggested == "--model.segmentor.method_kwargs '{beta: 1.2, gamma: 3.0}'"
    config, _ = resolved(["test", "--config", "configs/voc21.yaml", "--model", TINY, *shlex.split(suggested)])
    assert config["model"]["segmentor"]["init_args"]["method_kwargs"] == {"beta": 1.2, "gamma": 3.0}
    config, _ = resolved(["test", "--config", "configs/voc21.yaml", "--model", TINY,
                          *shlex.split("--model.segmentor.method_kwargs '{beta: 1.0, gamma: 3.0}'")])
    assert config["model"]["segmentor"]["init_args"]["method_kwargs"] == {"beta": 1.0, "gamma": 3.0}


def test_the_method_only_options_are_listed_once():
    """The CLI checks the options METHOD_OPTIONS lists; the library's method_settings takes exactly those (review 13)."""
    import inspect

    from proxyclip.method.method_options import METHOD_OPTIONS, method_settings
    from proxyclip.method.segmentor import TrainingFreeSegmentor

    keyword_only = [name for name, p in inspect.signature(method_settings).parameters.items() if p.kind is p.KEYWORD_ONLY]
    assert keyword_only == list(METHOD_OPTIONS)
    parameters = set(inspect.signature(TrainingFreeSegmentor.__init__).parameters)
    assert set(METHOD_OPTIONS) <= parameters and not {"beta", "gamma"} & parameters   # a method's own: method_kwargs


def test_unset_vfm_options_are_the_methods_defaults():
    from proxyclip.method.last_block import LAST_BLOCKS
    from proxyclip.method.method_options import method_vfm

    assert all((block.default_vfm is not None) == block.needs_vfm for block in LAST_BLOCKS.values())
    assert method_vfm("proxyclip", None, None) == ("dino_vitb8", True)
    assert method_vfm("sclip", None, None) == (None, None)


# --- item 15: a model config given as the benchmark -------------------------------------------------------------------
def test_a_model_config_given_as_the_benchmark_says_so(capsys):
    line = refused(["test", "--config", "configs/model/tiny_random.yaml"], capsys)
    assert "configs/model/tiny_random.yaml is a model config" in line
    assert "--config configs/voc21.yaml --model configs/model/tiny_random.yaml" in line


@pytest.mark.parametrize("form", ["two tokens", "equals"])
def test_shipped_config_names_resolve_from_another_folder(form, tmp_path, monkeypatch):
    """The README names of the shipped configs, as `--config F` or `--config=F`, from a folder without them."""
    monkeypatch.chdir(tmp_path)
    pairs = [("--config", "configs/voc21.yaml"), ("--model", "configs/model/tiny_random.yaml")]
    args = [token for key, value in pairs for token in ((key, value) if form == "two tokens" else (f"{key}={value}",))]
    config, _ = resolved(["test", *args])
    assert config["data"]["init_args"]["names_file"] == "voc21" and config["model"]["segmentor"]["init_args"]["method_kwargs"]["beta"] == 1.2


# --- review 2: a relative data path is relative to where it was given ---------------------------------------------
@pytest.fixture()
def two_folders(tmp_path):
    """A/pred.yaml (inputs: imgs, vocabulary: words.txt), A/ref.yaml (data: sub/d.yaml, the same values), a words.txt
    in A, A/sub and B; B is the working folder."""
    a, b = tmp_path / "A", tmp_path / "B"
    section = {"class_path": "datamodules.image_folder.ImageFolderDataModule",
               "init_args": {"inputs": "imgs", "vocabulary": "words.txt"}}
    for folder in (a / "sub", b):
        folder.mkdir(parents=True)
    (a / "pred.yaml").write_text(yaml.safe_dump({"data": section}))
    (a / "sub" / "d.yaml").write_text(yaml.safe_dump(section))
    (a / "ref.yaml").write_text(yaml.safe_dump({"data": "sub/d.yaml"}))
    for folder in (a, a / "sub", b):
        (folder / "words.txt").write_text("sky\nhorse\n")
    return a, b


@pytest.mark.parametrize("args, vocabulary, inputs", [
    (["--config", "A/pred.yaml"], "A/words.txt", "A/imgs"),
    (["--config", "A/ref.yaml"], "A/sub/words.txt", "A/sub/imgs"),
    (["--config", "A/pred.yaml", "--data.init_args.vocabulary", "words.txt"], "B/words.txt", "A/imgs"),
    (["--config", "A/pred.yaml", "--data.init_args.inputs", "imgs"], "A/words.txt", "B/imgs"),
    (["--config", "A/pred.yaml", "--data", '{"init_args": {"vocabulary": "words.txt"}}'], "B/words.txt", "A/imgs"),
    (["--config", "A/pred.yaml", "--data.init_args.vocabulary", "words.txt", "--data", "A/sub/d.yaml"],
     "A/sub/words.txt", "A/sub/imgs"),
    (["--config", "A/pred.yaml", "--data.init_args.vocabulary", "words.txt", "--data.init_args", '{"prob_thd": 0.5}'],
     "B/words.txt", "A/imgs"),
])
def test_a_relative_data_path_is_relative_to_where_it_was_given(args, vocabulary, inputs, two_folders, monkeypatch):
    """A value given on the command line is relative to the working folder, one from a config file to that file's
    folder, also when both give the same text: the last argument that set the option decides (review 2)."""
    a, b = two_folders
    monkeypatch.chdir(b)
    args = [str(a.parent / arg) if arg.startswith("A/") else arg for arg in args]
    config, _ = resolved(["predict", *args, "--model", TINY])
    data = config["data"]["init_args"]
    assert (data["vocabulary"], data["inputs"]) == (str(a.parent / vocabulary), str(a.parent / inputs))


def test_the_refusal_of_earlier_results_under_several_nodes_says_the_folder_must_be_shared(tmp_path, capsys):
    """Every node checks the output folder itself (review 9): the refusal says it must be on a shared file system."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}")
    args = ["test", "--config", "configs/voc21.yaml", "--model", TINY, "--model.output_dir", str(tmp_path / "out"),
            "--trainer.accelerator", "cpu"]
    assert "shared" not in refused(args, capsys)
    line = refused([*args, "--trainer.num_nodes", "2"], capsys)
    assert "already holds the results of an earlier run" in line
    assert line.endswith("With --trainer.num_nodes 2 every node checks this folder itself: it must be on a file system "
                         "all nodes share.")


@pytest.mark.subprocess
def test_ddp_workers_settle_the_command_the_same_way(models, tmp_path):
    """DDP's workers start again from the command as given: on 2 processes, every process runs SCLIP's own VOC21 values
    (vocabulary, crop, thresholds) from `--model.segmentor.method sclip`, and the counts equal one process's."""
    from proxyclip.commands.cli import cli_main

    root = write_voc(tmp_path / "data", n=3)
    args = ["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model", str(models / "plain.yaml"),
            "--model.segmentor.method", "sclip", "--data.init_args.root", str(root), "--model.num_panels", "0",
            "--trainer.logger", "false", "--trainer.accelerator", "cpu"]
    cli_main([*args, "--model.output_dir", str(tmp_path / "one")])
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), *args, "--model.output_dir", str(tmp_path / "two"),
                          "--trainer.devices", "2", "--trainer.strategy", "ddp"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("sclip's own voc21 values") == 1                 # one line, from rank 0
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["config"]["data"]["init_args"]["names_file"] == "sclip/voc21" and one["num_images"] == two["num_images"] == 3
    assert two["counts"] == one["counts"]


def test_the_subcommands_are_named_once_and_described_in_the_packages_words(capsys):
    """`proxyclip --help` lists each subcommand (command_line.SUBCOMMANDS, the one list) with this package's words,
    not the Trainer's docstring (review 19)."""
    from proxyclip.commands.cli import SUBCOMMAND_DESCRIPTIONS, ProxyCLIPCLI, cli_main
    from proxyclip.commands.command_line import SUBCOMMANDS

    assert list(ProxyCLIPCLI.subcommands()) == list(SUBCOMMAND_DESCRIPTIONS) == list(SUBCOMMANDS)
    with pytest.raises(SystemExit) as info:
        cli_main(["--help"])
    shown = "".join(capsys.readouterr().out.split())                     # argparse refills the lines
    assert info.value.code == 0 and "LightningTrainer" not in shown
    for name, text in SUBCOMMAND_DESCRIPTIONS.items():
        assert name + "".join(text.split()) in shown, name


@pytest.mark.parametrize("method", ["trident", "corrclip", "resclip", "cass"])
def test_the_method_kwargs_example_pastes_as_printed(method, capsys):
    """The refusal's example, every option at its default, is YAML that reads back as those defaults (null, true /
    false, lists for tuples, quoted strings; never Python's None, which YAML reads as the string 'None'), and pasted
    on the command line it is accepted as printed."""
    import shlex

    from proxyclip.method.method_options import method_option_types

    no_vfm = [] if method != "resclip" else [token for option in ("vfm", "vfm_pretrained", "vfm_kwargs", "vfm_mean",
                                                                  "vfm_std") for token in (f"--model.segmentor.{option}", "null")]
    args = ["test", "--config", "configs/voc21.yaml", "--model", TINY, "--model.segmentor.method", method, *no_vfm]
    line = refused([*args, "--model.segmentor.method_kwargs", "{no_such_option: 1}"], capsys)
    suggested = line[line.index("--model.segmentor.method_kwargs"):].split("; unset ones")[0]
    example = shlex.split(suggested)[1]
    defaults = {name: default for name, (_, default) in method_option_types(method).items()}
    assert yaml.safe_load(example) == json.loads(json.dumps(defaults)), example      # tuples as lists
    if method == "corrclip":        # its defaults name no mask source: refused for that alone, the values read as printed
        assert "neither a region-mask folder nor a mask generator" in refused([*args, *shlex.split(suggested)], capsys)
        return
    config, _ = resolved([*args, *shlex.split(suggested)])
    assert config["model"]["segmentor"]["init_args"]["method_kwargs"] == yaml.safe_load(example)
