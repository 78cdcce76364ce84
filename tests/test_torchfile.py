"""torchfile.load_torch_file: the safe loader of checkpoints and weights files (weights_only)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from pspnet_core import model as model_mod
from pspnet_core.store import runs
from pspnet_core.system.torchfile import TorchFileError, load_torch_file


class Payload:
    """Unpickling this object would create the marker file (what an attacker's code would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class MyError(RuntimeError):
    pass


def load(path, **kw):
    return load_torch_file(path, what="test file", remedy="delete it", **kw)


def test_tensors_and_plain_containers_load(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "epoch": 3, "history": [{"epoch": 1}]}
    torch.save(state, tmp_path / "ok.pt")
    for mmap in (False, True):
        got = load(tmp_path / "ok.pt", mmap=mmap)
        assert torch.equal(got["w"], state["w"]) and got["history"] == state["history"]


def test_legacy_format_loads_also_with_mmap(tmp_path):
    """torch refuses mmap for the legacy (non-zip) format; the loader falls back to reading."""
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(load(path, mmap=True)["w"], torch.ones(2))


@pytest.mark.parametrize("legacy", [False, True])
def test_a_pickle_with_code_is_refused_and_never_run(tmp_path, legacy):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    if legacy:
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:
        torch.save({"w": Payload(marker)}, path)
    with pytest.raises(TorchFileError, match=(
            r"refused to load test file .*evil\.pt: it refers to (io|builtins)\.open.*could run "
            r"code.*; delete it$")):
        load(path)
    assert not marker.exists()


def test_damaged_file_names_the_file_and_the_remedy(tmp_path):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1000)}, buf)
    (tmp_path / "cut.pt").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "text.pt").write_bytes(b"hello, not a checkpoint")
    for name in ("cut.pt", "text.pt"):
        with pytest.raises(TorchFileError, match=rf"test file .*{name} is damaged or not a "
                                                 r"PyTorch file.*; delete it$"):
            load(tmp_path / name)


def test_the_caller_chooses_the_error_and_a_missing_file_is_not_found(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(MyError, match="is damaged"):
        load(tmp_path / "bad.pt", error=MyError)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.pt")


def test_weights_file_error_is_a_torch_file_error():
    """model.read_state_dict raises WeightsFileError; callers catching the generic class still
    catch it. The run store raises its own RunFileError through the same loader."""
    assert issubclass(model_mod.WeightsFileError, TorchFileError)
    assert runs.load_torch_file is load_torch_file
