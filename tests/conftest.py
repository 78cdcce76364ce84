"""Session fixtures shared by the engine, run-store and CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_preset import write_tiny


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> tuple[Path, Path, object]:
    """(home, params path, Run) of a finished, uninterrupted tiny ``sgd_mix`` run, trained once
    per session. Tests that use it train a model: mark them ``slow``."""
    from pspnet_core.config import load_params
    from pspnet_core.train.grid import get_run

    home = tmp_path_factory.mktemp("reference")
    params = write_tiny(home)
    run = get_run(load_params(params), "sgd_mix")
    assert run.done
    return home, params, run
