"""Seeds as a study parameter: ``seeds:`` in the preset, one run folder per (run, seed), the
run x seed grid in ``list_runs`` / ``train --list``, ``grid.get_runs``; and the per-image mIoU
column of ``analysis.ranked_losses`` (claim 4(b)). Nothing here trains."""

from __future__ import annotations

import pytest
import torch
from tiny_preset import write_tiny

from pspnet_core import data, metrics
from pspnet_core.config import ParamsError, load_params, resolve_run, run_hash
from pspnet_core.model import build_model
from pspnet_core.results import analysis
from pspnet_core.store import runs
from pspnet_core.train import cli as train
from pspnet_core.train.grid import get_run, get_runs


def test_seeds_list_and_the_old_seed_key(tmp_path):
    cfg = load_params("smoke")
    assert cfg.seeds == (0, 1, 2) and cfg.seed == 0  # seed: the first, for single-seed code
    assert load_params("smoke", {"seeds": [4, 5]}).seeds == (4, 5)
    assert load_params("smoke", seed=7).seeds == (7,)  # an old-style override: one seed
    old = write_tiny(tmp_path, name="old.yaml")  # tiny: seeds: [0]
    text = old.read_text().replace("seeds:\n- 0\n", "seed: 3\n")
    old.write_text(text)
    assert load_params(old).seeds == (3,)  # the old key in a file still reads
    old.write_text(text + "seeds: [1]\n")
    with pytest.raises(ParamsError, match="both 'seed' and 'seeds'"):
        load_params(old)
    for bad, msg in (([], "at least one"), ([1, 1], "distinct"), ([-1], "distinct"),
                     ("0", "expected a list"), ([0.5], r"seeds\[0\]")):
        with pytest.raises(ParamsError, match=msg):
            load_params("smoke", {"seeds": bad})
    assert load_params("smoke").to_dict()["seeds"] == [0, 1, 2]


def test_resolve_run_per_seed_and_folder_names(tmp_path):
    cfg = load_params(write_tiny(tmp_path, seeds=[0, 3]))
    a, b = resolve_run(cfg, "sgd_mix", 0), resolve_run(cfg, "sgd_mix", 3)
    assert (a.seed, b.seed) == (0, 3) and resolve_run(cfg, "sgd_mix") == a
    assert run_hash(a) != run_hash(b)
    assert runs.run_dir(b).name == f"sgd_mix-s3-{run_hash(b)}"
    with pytest.raises(ParamsError, match="not one of .* seeds"):
        resolve_run(cfg, "sgd_mix", 9)
    table = runs.list_runs(cfg)
    assert len(table) == 3 * 2 and list(table.columns[:3]) == ["run", "seed", "status"]
    grid = table.pivot(index="run", columns="seed", values="status")
    assert grid.shape == (3, 2) and (grid == "absent").all().all()
    got = get_runs(cfg, "adam_none", train=False)
    assert list(got) == [0, 3] and got[3].run_cfg.seed == 3 and got[3].status == "absent"
    assert get_run(cfg, "adam_none", train=False, seed=3).dir == got[3].dir


def test_train_cli_grid_and_seed_option(tmp_path, capsys):
    params = write_tiny(tmp_path, seeds=[0, 3])
    assert train.main(["--params", str(params), "--list"]) == 0
    out = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert len(out) == 6 and sum(" s3 " in ln for ln in out) == 3
    assert any(ln.startswith("sgd_mix") and "/sgd_mix-s3-" in ln for ln in out)
    assert train.main(["--params", str(params), "--list", "--seed", "3"]) == 0
    out = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert len(out) == 3 and all(" s3 " in ln for ln in out)
    assert train.main(["--params", str(params), "--run", "sgd_mix", "--seed", "4"]) == 2
    assert "not one of the preset's seeds" in capsys.readouterr().err


def test_ranked_losses_have_per_image_miou(tmp_path):
    """An untrained checkpoint is enough: the columns and their definition, and the cache."""
    cfg = load_params(write_tiny(tmp_path))
    run = runs.open_run(resolve_run(cfg, "sgd_mix"))
    torch.manual_seed(0)
    rc = run.run_cfg
    net = build_model(rc.model, rc.num_classes)  # the run's own network, untrained
    history = [{"epoch": e, "train_loss": 1.0, "heldout_loss": 1.0, "lr": 0.01}
               for e in range(1, rc.epochs + 1)]
    run.dir.mkdir(parents=True)
    runs.save_epoch(run, {"model": net.state_dict(), "optimizer": {}, "scheduler": {},
                          "epoch": rc.epochs, "history": history})
    frame = analysis.ranked_losses(run, "heldout", n=2, seed=0)
    assert list(frame.columns) == list(analysis.RANKED_COLUMNS)
    assert frame["miou"].between(0, 1).all() and frame["pixel_acc"].between(0, 1).all()
    ds = data.build_eval_dataset(run.run_cfg, "heldout")
    row = frame.iloc[0]
    x, y = ds[int(row["index"])]
    logits = analysis.predict(analysis.load_model(run), x)
    cm = metrics.confusion_matrix(logits[0].argmax(0), y, run.run_cfg.num_classes)
    assert row["miou"] == pytest.approx(metrics.mean_iou(cm))
    assert row["pixel_acc"] == pytest.approx(metrics.pixel_accuracy(cm))
    # claim 4(a)'s complexity: of the evaluated target the loss sees, not of the raw mask
    assert row["complexity"] == pytest.approx(analysis.loss_complexity(ds, int(row["index"])))
    # a finished run caches in the one format: the whole split's images are predictions()'
    # cache; the CSV caches of earlier versions are never read
    runs.mark_done(run)
    old = run.dir / "per_image_losses-heldout-n2-seed0-miou.csv"
    old.write_text("index,id,loss,complexity,split\n0,x,1.0,0.1,heldout\n")
    again = analysis.ranked_losses(run, "heldout", n=2, seed=0)
    cache = analysis._ranked_cache(run, "heldout", 2, 0)
    assert cache.name == f"predictions-heldout-{run.hash}.npz" and cache.is_file()
    assert again.equals(frame)
    assert analysis.ranked_losses(run, "heldout", n=2, seed=0).equals(again)
