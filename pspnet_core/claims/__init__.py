"""Verdicts on the paper's seven claims from the run store's numbers, per seed
(docs/method.md#claims). Three parts, one idea each:

- :mod:`~pspnet_core.claims.statistics`: intervals, resampling, Holm's adjustment, the verdict
  rule;
- :mod:`~pspnet_core.claims.curves` (claims 1, 2, 3, 5, 6, on histories) and
  :mod:`~pspnet_core.claims.images` (claims 4 and 7, on per-image and per-pixel evidence): the
  criteria;
- :mod:`~pspnet_core.claims.report`: Markdown and DataFrames.

Claims 1-3 read the training loss through :func:`train_loss_column` (``train_clean_loss``
where the history logs it, else ``train_loss``). Every tested part's error rates under the
null and its power are simulated by ``tools/calibrate_claims.py`` (docs/method.md#calibration).

API::

    evaluate_claims(histories, galleries=None, leaf=None, top_k=16, claim6_run="sgd_mix")
    claims_markdown(claims) -> str; claims_frame / parts_frame -> DataFrame; write_claims(...)
"""

from __future__ import annotations

from typing import Any

from pspnet_core.claims.curves import (
    CLAIM_TEXTS,
    Histories,
    claim1,
    claim2,
    claim3,
    claim5,
    claim6,
    stall_effect,
    train_loss_column,
)
from pspnet_core.claims.images import claim4, claim7, confidence_auroc, confidence_histograms
from pspnet_core.claims.report import (
    RULE,
    claims_frame,
    claims_markdown,
    parts_frame,
    report_header,
    write_claims,
)
from pspnet_core.claims.statistics import (
    N_BOOT,
    VERDICTS,
    Claim,
    Part,
    Verdict,
    combine,
    holm_does_not_hold,
    make_part,
    noise_sigma,
    t_interval,
    window,
)
from pspnet_core.config import SGD_MIX

__all__ = [
    "CLAIM_TEXTS", "RULE", "VERDICTS", "Claim", "Part", "Verdict", "claim1", "claim2",
    "claim3", "claim4", "claim5", "claim6", "claim7", "claims_frame", "claims_markdown",
    "combine", "confidence_auroc", "confidence_histograms", "evaluate_claims",
    "holm_does_not_hold", "make_part", "noise_sigma", "parts_frame", "report_header",
    "stall_effect", "t_interval", "train_loss_column", "window", "write_claims",
]


def evaluate_claims(
    histories: Histories,
    galleries: Any = None,
    leaf: Any = None,
    top_k: int = 16,
    *,
    claim6_run: str = SGD_MIX,
    gallery_seed: int | None = None,
    leaf_seed: int | None = None,
    n_boot: int = N_BOOT,
) -> list[Claim]:
    """All seven claims, in order, each judged per seed (:mod:`.statistics`: the rule).

    Args:
        histories: ``{run name: {seed: history DataFrame}}`` (history.csv columns). A plain
            DataFrame instead of the inner dict counts as one seed (labelled 0). Cross-run
            comparisons pair runs by seed.
        galleries: claim 4's ranked images, ``{seed: {"train": frame, "heldout": frame}}``
            from ``analysis.ranked_losses`` of the ``sgd_mix`` run; or one gallery of the seed
            ``gallery_seed``.
        leaf: claim 7's ``{seed: analysis.leaf_outputs(leaf run of that seed)}``, or one such
            dict of the seed ``leaf_seed``.
        top_k: claim 4(b)'s number of highest-loss images per split (the gallery size).
        claim6_run: the pre-registered augmented PSPNet run of claim 6 (the preset's
            ``claims.claim6_run``).
        n_boot: image resamples (claims 4 and 7).
    """
    return [
        claim1(histories),
        claim2(histories),
        claim3(histories),
        claim4(galleries, top_k=top_k, seed=gallery_seed, n_boot=n_boot),
        claim5(histories),
        claim6(histories, run=claim6_run),
        claim7(histories, leaf, seed=leaf_seed, n_boot=n_boot),
    ]
