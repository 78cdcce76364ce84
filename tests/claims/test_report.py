"""All claims together, and the Markdown / DataFrame report."""

from __future__ import annotations

import numpy as np
from constructed import SEEDS, hist, jitter
from test_curves import FOLLOWS, OVERFIT_HO, TRAIN, N
from test_images import gallery, leaf_maps

from pspnet_core import claims as C


def test_evaluate_markdown_and_write(tmp_path):
    def runs(train, ho):
        return {s: hist(train + jitter(s, N), ho + jitter(s, N)) for s in SEEDS}

    histories = {"sgd_none": runs(TRAIN * 0.5, OVERFIT_HO), "sgd_affine": runs(TRAIN, FOLLOWS),
                 "adam_affine": hist(TRAIN, FOLLOWS)}  # a plain DataFrame: one seed
    leaf = {s: leaf_maps(s, informative=True) for s in SEEDS}
    out = C.evaluate_claims(histories, {s: gallery(s, True) for s in SEEDS}, leaf, top_k=5,
                            n_boot=200, claim6_run="sgd_affine")
    assert [c.number for c in out] == [1, 2, 3, 4, 5, 6, 7]
    assert [c.verdict for c in out] == [
        "holds", "does not hold", "not testable here", "holds", "not testable here",
        "not testable here", "partly holds"]
    md = C.claims_markdown(out, header="Preset smoke (hash abc)")
    assert md.startswith("Preset smoke (hash abc)\n\n**Rule.**")
    assert "Holm" in md and "claims.claim6_run" in md and "half-samples" in md
    assert md.count("## Claim ") == 7 and "| 1 | Without augmentation" in md
    lo, hi = out[0].parts[0].seed_interval
    assert f"[{lo:+.4g}, {hi:+.4g}]" in md
    path = C.write_claims(out, tmp_path / "figs" / "claims.md")
    assert path.read_text().startswith("# Claims") and C.claims_markdown(out) in path.read_text()
    assert list(path.parent.iterdir()) == [path]  # no temp files left
    frame = C.claims_frame(out)
    assert len(frame) == 7 and list(frame["verdict"])[0] == "holds"
    parts = C.parts_frame(out)
    assert len(parts) == sum(len(c.parts) + len(c.context) for c in out)
    assert {"seed_lo", "boot_hi", "p_against", "role"} <= set(parts)
    assert out[0].holds is True and out[1].holds is False and out[4].holds is None
    assert np.isfinite(parts.loc[parts["number"] == 1, "p_against"]).all()
