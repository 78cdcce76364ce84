"""PSPNet study (the paper's Section 2): the small importable core at the top, the machinery in
subpackages by layer.

The core, importable on its own:

    model     PSPNet on a ResNet50 backbone (Section 2.1)        unet     the U-Net of Fig. 12
    losses    cross-entropy with the auxiliary loss (Section 2.2)  mixing   Mixup / CutMix
    metrics   IoU, Dice, pixel accuracy (one definition each)  data     the datasets and transforms
    config    the preset schema (params/*.yaml), validated

The machinery, each layer importing only the ones below it (docs/architecture.md):

    study     the whole paper in one batch: pspnet-study, notebooks, index page, reproduction
    results   reading trained runs: predictions, figures, the explorer     claims  the verdicts
    train     the engine, progress, launchers, pspnet-train
    store     run folders, locks, provenance, the study's state file
    system    paths, atomic files, precision and device, processes, the error boundary
"""

__version__ = "0.1.0"
