"""PSPNet study core: model, losses, Mixup/CutMix, datasets, engine, metrics, run store, plots."""

__version__ = "0.1.0"
