"""The parameter schema: one clear error before anything runs; hashes that track training."""

import dataclasses

import pytest
import yaml

from pspnet_core import config
from pspnet_core.config import ParamsError, load_params, resolve_run, run_hash


def test_presets_load_and_resolve_every_run():
    for preset in ("smoke", "paper"):
        cfg = load_params(preset)
        assert cfg.name == preset
        for run in cfg.runs:
            rc = resolve_run(cfg, run)
            assert rc.num_classes == (1 if rc.task == "leaf" else cfg.data.num_classes)
    smoke = load_params("smoke")
    assert smoke.data.voc_source == "synthetic" and smoke.model.weights is None
    paper = load_params("paper")
    assert paper.train.image_size == 473 and paper.data.n_train == 1400
    assert paper.data.n_heldout == 500 and paper.model.freeze_backbone
    assert paper.sgd.lr == 0.01 and paper.sgd.weight_decay == 1e-4 and paper.sgd.poly_power == 0.9
    assert paper.adam.lr == 0.01 and (paper.adam.beta1, paper.adam.beta2) == (0.9, 0.999)


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ParamsError) as err:
        load_params("smoke", {"train.epoch": 3})
    msg = str(err.value)
    assert "'train.epoch'" in msg and "epochs" in msg and "batch_size" in msg


def test_unknown_top_level_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"sed": 1}))
    with pytest.raises(ParamsError, match=r"unknown key 'sed'.*seed"):
        load_params(path)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("train.epochs", "ten", r"train\.epochs: expected an integer"),
        ("train.epochs", 2.5, r"train\.epochs: expected an integer"),
        ("channels_last", "yes", r"channels_last: expected true or false"),
        ("sgd.lr", "fast", r"sgd\.lr: expected a number"),
        ("precision", "fp16",
         r"precision: 'fp16' is not allowed; use one of 'auto', 'fp32', 'bf16'"),
        ("runs.x", {"optimizer": "rmsprop"}, r"runs\.x\.optimizer: 'rmsprop' is not allowed"),
    ],
)
def test_wrong_type_names_key(key, value, pattern):
    with pytest.raises(ParamsError, match=pattern):
        load_params("smoke", {key: value})


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("train.epochs", 0, r"train\.epochs: 0 is out of range; allowed \[1, 10000\]"),
        ("sgd.momentum", 1.5, r"sgd\.momentum: 1\.5 is out of range"),
        ("augment.hflip", -0.1, r"augment\.hflip: -0\.1 is out of range; allowed \[0\.0, 1\.0\]"),
        ("train.image_size", 8, r"train\.image_size: 8 is out of range"),
    ],
)
def test_out_of_range_names_key_and_range(key, value, pattern):
    with pytest.raises(ParamsError, match=pattern):
        load_params("smoke", {key: value})


def test_inconsistent_scale_range():
    with pytest.raises(ParamsError, match="scale_min"):
        load_params("smoke", {"augment.scale_min": 3.0})


def test_missing_preset_lists_available():
    with pytest.raises(ParamsError, match="available presets: .*smoke"):
        load_params("nope")


def test_overrides_dotted_and_keyword():
    cfg = load_params("smoke", {"train.epochs": 3}, seed=7, sgd__momentum=0.5)
    assert cfg.train.epochs == 3 and cfg.seed == 7 and cfg.sgd.momentum == 0.5
    assert isinstance(load_params("smoke", {"sgd.lr": 1}).sgd.lr, float)  # int accepted as float
    assert load_params("smoke").train.epochs != 3  # the file itself is untouched


def test_configs_are_frozen():
    cfg = load_params("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


def test_unknown_run_lists_runs():
    with pytest.raises(ParamsError, match="runs: .*sgd_mix"):
        resolve_run(load_params("smoke"), "sgd_nothing")


def test_run_hash_stable_and_sensitive():
    cfg = load_params("smoke")
    h = run_hash(resolve_run(cfg, "sgd_mix"))
    assert len(h) == 12 and h == run_hash(resolve_run(load_params("smoke"), "sgd_mix"))
    # things that change training change the hash
    for override in (
        {"seed": 1},
        {"train.epochs": 9},
        {"sgd.momentum": 0.8},
        {"augment.cutmix_prob": 0.25},
        {"data.n_train": 40},
        {"model.aux_weight": 0.3},
    ):
        assert run_hash(resolve_run(load_params("smoke", override), "sgd_mix")) != h, override
    # the precision a run computes in (auto resolves to one of them on each machine)
    fp32, bf16 = (run_hash(resolve_run(load_params("smoke", {"precision": p}), "sgd_mix"))
                  for p in ("fp32", "bf16"))
    assert fp32 != bf16 and h in (fp32, bf16)
    # things that do not change training keep it
    for override in ({"device": "cpu"}, {"quiet": True}, {"runs_dir": "elsewhere"}, {"name": "x"}):
        assert run_hash(resolve_run(load_params("smoke", override), "sgd_mix")) == h, override
    # settings of the other optimizer do not matter to an SGD run
    assert run_hash(resolve_run(load_params("smoke", {"adam.lr": 0.5}), "sgd_mix")) == h
    # different runs differ
    assert run_hash(resolve_run(cfg, "sgd_affine")) != h


def test_dump_params_round_trips():
    rc = resolve_run(load_params("smoke"), "adam_mix")
    tree = yaml.safe_load(config.dump_params(rc))
    assert tree["run"] == "adam_mix" and tree["optim"]["lr"] == rc.optim.lr
    assert tree == rc.to_dict()
    # the process's runtime settings are not part of a run: params.yaml does not list them
    assert "device" not in tree and "quiet" not in tree


def test_params_yaml_with_runtime_keys_still_loads(tmp_path):
    """A params.yaml written before the Runtime split lists ``device`` and ``quiet``: the store
    reads it back (the keys are ignored), to the same RunConfig and run hash."""
    from pspnet_core.store import runs

    rc = resolve_run(load_params("smoke"), "sgd_mix")
    old = {**rc.to_dict(), "device": "cuda", "quiet": True}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(old, sort_keys=False))
    back = runs.load_run_config(path)
    assert back == rc and config.run_hash(back) == config.run_hash(rc)
    path.write_text(config.dump_params(rc))
    assert runs.load_run_config(path) == rc


def test_hash_ignores_what_does_not_change_training_and_tracks_what_does():
    from pspnet_core.config import load_params, resolve_run, run_hash

    def h(run, **over):
        return run_hash(resolve_run(load_params("smoke", over), run))

    base_voc, base_leaf = h("sgd_affine"), h("leaf_sgd_affine")
    # loader workers, download flag, evaluation batch, device: same training
    assert h("sgd_affine", **{"data.num_workers": 4, "data.download": True,
                              "train.eval_batch_size": 3, "device": "cpu"}) == base_voc
    # the other task's data and the CutMix probability of a run that does not mix
    assert h("sgd_affine", **{"data.leaf_heldout_fraction": 0.5,
                              "augment.cutmix_prob": 0.9}) == base_voc
    assert h("leaf_sgd_affine", **{"data.n_train": 10}) == base_leaf
    # what changes training changes the hash
    assert h("sgd_affine", **{"data.n_train": 10}) != base_voc
    assert h("sgd_mix", **{"augment.cutmix_prob": 0.9}) != h("sgd_mix")
    assert h("sgd_affine", **{"sgd.momentum": 0.0}) != base_voc
    assert h("sgd_affine", precision="fp32") != h("sgd_affine", precision="bf16")


def test_recipe_version_is_hashed(monkeypatch):
    from pspnet_core import config

    rc = config.resolve_run(config.load_params("smoke"), "sgd_mix")
    before = config.run_hash(rc)
    from pspnet_core.config import resolve

    monkeypatch.setattr(resolve, "RECIPE_VERSION", config.RECIPE_VERSION + 1)
    assert config.run_hash(rc) != before


def test_fidelity_switches_in_presets_and_schema():
    """model.frozen_bn, augment.preset, adam.schedule (docs/method.md#deviations) and the
    unet_none run: the paper preset states the listing's reading, defaults keep the old code."""
    paper, smoke = load_params("paper"), load_params("smoke")
    assert paper.model.frozen_bn == "train" and paper.augment.preset == "paper"
    assert paper.augment.normalize == "paper" and paper.adam.schedule == "poly"
    assert paper.adam.poly_power == 0.9
    assert smoke.augment.preset == "pspnet" and smoke.adam.schedule == "constant"
    defaults = config.StudyConfig()
    assert defaults.model.frozen_bn == "train" and defaults.augment.preset == "pspnet"
    assert defaults.adam.schedule == "constant" and defaults.model.unet_width == 16
    assert config.DEFAULT_RUNS["unet_none"] == config.RunSpec("voc", "sgd", "none", "unet")
    for key, value in [("model.frozen_bn", "frozen"), ("augment.preset", "imagenet"),
                       ("adam.schedule", "step"), ("runs.u", {"arch": "resnet"})]:
        with pytest.raises(ParamsError, match="is not allowed"):
            load_params("smoke", {key: value})
    with pytest.raises(ParamsError, match=r"model\.unet_width: 0 is out of range"):
        load_params("smoke", {"model.unet_width": 0})


def test_fidelity_switches_change_the_hash():
    def h(run="adam_affine", **over):
        return run_hash(resolve_run(load_params("smoke", over), run))

    base = h()
    assert h(**{"model.frozen_bn": "eval"}) != base
    assert h(**{"augment.preset": "paper"}) != base
    assert h(**{"adam.schedule": "poly"}) != base
    unet = resolve_run(load_params("smoke"), "unet_none")
    pspnet = dataclasses.replace(unet, arch="pspnet")
    assert run_hash(unet) != run_hash(pspnet)


def test_paper_preset_pre_registers_claim6_and_sets_the_deviation_switches():
    cfg = load_params("paper")
    assert cfg.claims.claim6_run == "sgd_mix"
    assert cfg.model.unet_width >= 64 and cfg.model.output_stride == 8
    assert cfg.augment.blur == "1.x" and cfg.augment.eval_geometry == "center_crop"
    unet = resolve_run(cfg, "unet_none")
    assert unet.optim == cfg.unet_sgd and unet.optim.nesterov and unet.optim.momentum == 0.99
    assert resolve_run(cfg, "sgd_none").optim == cfg.sgd  # the PSPNet keeps the listing's SGD


def test_claims_and_switch_keys_are_validated():
    with pytest.raises(ParamsError, match="claims.claim6_run.*'unet_none'.*sgd_none"):
        load_params("smoke", {"claims.claim6_run": "unet_none"})
    with pytest.raises(ParamsError, match="model.output_stride"):
        load_params("smoke", {"model.output_stride": 16})
    with pytest.raises(ParamsError, match="unet_sgd.nesterov.*momentum"):
        load_params("smoke", {"unet_sgd.momentum": 0.0})
    with pytest.raises(ParamsError, match="augment.blur"):
        load_params("smoke", {"augment.blur": "3.x"})


@pytest.mark.parametrize(("text", "key", "lines"), [
    ("train:\n  epochs: 2\n  batch_size: 2\ntrain:\n  epochs: 99\n", "'train'", "1 and 4"),
    ("train:\n  epochs: 2\n  epochs: 3\n", "'epochs'", "2 and 3"),
    ("sgd: {lr: 0.1, lr: 0.2}\n", "'lr'", "1 and 1"),
])
def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path, text, key, lines):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=rf"twice\.yaml: .*key {key} appears twice .*lines "
                                          rf"{lines}"):
        load_params(path)


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "a..b"])
def test_names_that_would_be_odd_paths_are_refused(tmp_path, name):
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump({"name": name}))
    with pytest.raises(ParamsError, match=r"name: .* is not a valid name.*not starting with '\.'"):
        load_params(path)
    path.write_text(yaml.safe_dump({"runs": {name: {"task": "voc"}}}))
    with pytest.raises(ParamsError, match="is not a valid name"):
        load_params(path)


def test_ppm_bin1_bn_switch_is_validated_and_hashed_only_when_set():
    """model.ppm_bin1_bn (docs/method.md#deviations): the paper preset has the listing's BN on
    the 1x1 bin, smoke keeps the old conv-with-bias; false leaves stored run hashes as they were."""
    assert load_params("paper").model.ppm_bin1_bn is True
    assert load_params("smoke").model.ppm_bin1_bn is False
    assert config.StudyConfig().model.ppm_bin1_bn is False
    with pytest.raises(ParamsError, match=r"model\.ppm_bin1_bn: expected true or false"):
        load_params("smoke", {"model.ppm_bin1_bn": "yes"})
    with pytest.raises(ParamsError, match=r"model\.ppm_bin1_bn: true .*train\.batch_size \(1\)"):
        load_params("smoke", {"model.ppm_bin1_bn": True, "train.batch_size": 1})
    load_params("smoke", {"model.ppm_bin1_bn": True, "train.batch_size": 2})
    load_params("smoke", {"model.ppm_bin1_bn": True, "train.batch_size": 1,
                          "model.ppm_bins": [2, 3]})  # no 1x1 bin: nothing to refuse
    rc = resolve_run(load_params("smoke"), "sgd_affine")
    assert "ppm_bin1_bn" not in config.hashed_fields(rc)["model"]  # false: old hashes hold
    on = resolve_run(load_params("smoke", {"model.ppm_bin1_bn": True}), "sgd_affine")
    assert config.hashed_fields(on)["model"]["ppm_bin1_bn"] is True
    assert run_hash(on) != run_hash(rc)
