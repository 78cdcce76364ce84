"""``python -m pspnet_core.train``: --list, --set, errors, and a finished run returns at once."""

from __future__ import annotations

import pytest
from tiny_preset import train_cli, write_tiny

from pspnet_core.config import ParamsError, parse_overrides
from pspnet_core.train import cli as train


def test_parse_overrides_yaml_values():
    assert parse_overrides(["train.epochs=2", "sgd.lr=0.5", "channels_last=true",
                             "model.weights=null", "device=cpu"]) == {
        "train.epochs": 2, "sgd.lr": 0.5, "channels_last": True, "model.weights": None,
        "device": "cpu"}
    with pytest.raises(ParamsError, match="key=value"):
        parse_overrides(["epochs"])
    with pytest.raises(ParamsError, match="key=value"):
        parse_overrides(["=3"])
    with pytest.raises(ParamsError, match="YAML"):
        parse_overrides(["sgd.lr=[0.1"])
    assert parse_overrides(["data.voc_root=a=b"]) == {"data.voc_root": "a=b"}


def test_bad_override_and_unknown_run_exit_2(tmp_path, capsys):
    params = write_tiny(tmp_path)
    assert train.main(["--params", str(params), "--set", "train.epoch=2", "--list"]) == 2
    assert "unknown key 'train.epoch'" in capsys.readouterr().err
    assert train.main(["--params", str(params), "--run", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert train.main(["--params", str(params)]) == 2


def test_list_shows_status_and_dirs(tmp_path, capsys):
    params = write_tiny(tmp_path)
    assert train.main(["--params", str(params), "--list"]) == 0
    header, columns, *out = capsys.readouterr().out.splitlines()
    # the header names the preset and the precision its runs resolve to, and why
    assert header.startswith("# preset 'tiny', precision fp32: set in the preset")
    assert columns.split() == ["#", "run", "seed", "status", "folder"]
    assert len(out) == 3 and all("absent" in line for line in out)
    assert any(line.startswith("sgd_mix") and str(tmp_path / "runs" / "sgd_mix-") in line
               for line in out)


@pytest.mark.slow
def test_finished_run_returns_at_once_and_lists_done(reference_run):
    home, params, run = reference_run
    mtime = run.checkpoint_path.stat().st_mtime_ns
    out = train_cli(home, params, "--run", "sgd_mix")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"sgd_mix: done, {run.dir}"
    assert run.checkpoint_path.stat().st_mtime_ns == mtime  # nothing was retrained
    listing = train_cli(home, params, "--list")
    lines = {ln.split()[0]: ln for ln in listing.stdout.splitlines() if ln[:1] != "#"}
    assert "done" in lines["sgd_mix"] and str(run.dir) in lines["sgd_mix"]
    assert "absent" in lines["adam_none"]


def test_missing_dataset_is_one_clear_error_and_leaves_no_run_folder(tmp_path, capsys):
    params = write_tiny(tmp_path)
    voc_root = tmp_path / "no-voc-here"
    code = train.main(["--params", str(params), "--run", "sgd_mix",
                       "--set", "data.voc_source=voc2012", "--set", f"data.voc_root={voc_root}"])
    assert code == 2  # bad input, as the boundary's table says (no remapping per run)
    err = capsys.readouterr().err
    assert err.startswith("error: sgd_mix (seed 0): VOC2012 not found")
    assert "VOC2012 not found" in err and str(voc_root / "VOCdevkit" / "VOC2012") in err
    assert "download: true" in err and "Traceback" not in err
    runs_dir = tmp_path / "runs"
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []


def test_device_and_quiet_go_into_the_runtime_not_the_runs(tmp_path, monkeypatch):
    """``--device`` / ``--quiet`` build the one Runtime the grid trains with; the preset's
    ``quiet:`` is read when no flag is given; the runs (and their hashes) stay the same."""
    import torch

    from pspnet_core.config import load_params, resolve_run, run_hash
    from pspnet_core.train.runtime import Runtime

    seen = []
    monkeypatch.setattr(train, "get_grid", lambda cfg, names, **kw: seen.append((cfg, kw)))
    params = write_tiny(tmp_path, quiet=False)
    assert train.main(["--params", str(params), "--run", "adam_none"]) == 0
    assert train.main(["--params", str(params), "--run", "adam_none", "--device", "cpu",
                       "--quiet"]) == 0
    (cfg0, kw0), (cfg1, kw1) = seen
    assert kw0["runtime"] == Runtime(torch.device("cpu"), 0, 1, quiet=False)
    assert kw1["runtime"] == Runtime(torch.device("cpu"), 0, 1, quiet=True)
    assert not cfg1.quiet  # --quiet is not written into the preset
    base = load_params(params)
    assert run_hash(resolve_run(cfg1, "adam_none")) == run_hash(resolve_run(base, "adam_none"))
