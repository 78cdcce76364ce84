"""provenance: the record a figure carries in its PNG and in provenance.json."""

from __future__ import annotations

import json

from matplotlib.figure import Figure

from pspnet_core.config import load_params, preset_hash
from pspnet_core.results import plots
from pspnet_core.store import provenance


class FakeRun:
    def __init__(self, name, seed, hash_):
        self.name, self.hash = name, hash_
        self.run_cfg = type("R", (), {"seed": seed})()


def _fig():
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def test_png_and_json_carry_the_record_and_reruns_are_byte_identical(tmp_path):
    cfg = load_params("smoke")
    rec = provenance.figure_record(cfg, [FakeRun("sgd_mix", 1, "abc"), FakeRun("sgd_mix", 0, "d")])
    assert rec["runs"] == [["sgd_mix", 0, "d"], ["sgd_mix", 1, "abc"]]
    assert rec["preset_hash"] == preset_hash(cfg) and rec["isa"] in ("amx", "avx512_bf16", "none")
    assert "commit" not in json.dumps(rec)  # the PNG never names the commit
    plots.save_figure(_fig(), tmp_path, "fig99_test", formats=("png",), provenance=rec)
    png = tmp_path / "fig99_test.png"
    assert provenance.read_png(png) == rec
    first = png.read_bytes()
    plots.save_figure(_fig(), tmp_path, "fig99_test", formats=("png",), provenance=rec)
    assert png.read_bytes() == first
    data = json.loads((tmp_path / provenance.FILE).read_text())
    assert data["figures"]["fig99_test"] == rec


def test_study_marks_notebook_and_code_commit_without_losing_records(tmp_path):
    rec = {"preset": "smoke", "runs": []}
    provenance.record_figure(tmp_path, "fig01_a", rec)
    provenance.mark_notebook(tmp_path, ["fig01_a"], "01_architecture",
                             commit={"commit": "c0ffee", "dirty": False})
    provenance.record_figure(tmp_path, "fig01_a", {**rec, "preset_hash": "h"})  # a rerun
    data = json.loads((tmp_path / provenance.FILE).read_text())
    assert data["figures"]["fig01_a"]["notebook"] == "01_architecture"
    assert data["figures"]["fig01_a"]["preset_hash"] == "h"
    assert data["code"]["commit"] == "c0ffee"
    (tmp_path / provenance.FILE).write_text("{not json")  # damaged: rebuilt, not a crash
    provenance.record_figure(tmp_path, "fig02_b", rec)
    assert list(json.loads((tmp_path / provenance.FILE).read_text())["figures"]) == ["fig02_b"]


def test_code_commit_names_the_last_code_change():
    info = provenance.code_commit()
    assert set(info) == {"commit", "dirty", "paths", "notebooks"}
    assert "notebooks" not in info["paths"] and len(info["notebooks"]) == 12
    assert info["commit"] is None or len(info["commit"]) == 40


def test_notebook_code_hash_ignores_outputs(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1\n"], "outputs": []}]}
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    before = provenance.notebook_code_hash(tmp_path)
    nb["cells"][0]["outputs"] = [{"output_type": "stream", "text": "42"}]
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    assert provenance.notebook_code_hash(tmp_path) == before
    nb["cells"][0]["source"] = ["x = 2\n"]
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    assert provenance.notebook_code_hash(tmp_path) != before
