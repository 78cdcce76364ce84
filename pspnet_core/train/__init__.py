"""Training: the engine (fit, grid of runs and seeds), progress lines, launchers, and the
``pspnet-train`` command (``python -m pspnet_core.train``)."""
