import os

import pytest

from pspnet_core.system.atomic import atomic_path, atomic_write_text


def test_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "history.csv"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in target.parent.iterdir()] == ["history.csv"]


def test_kill_mid_write_keeps_old_file_whole(tmp_path):
    target = tmp_path / "checkpoint.pt"
    atomic_write_text(target, "old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new partial")
            raise KeyboardInterrupt  # e.g. a kill mid-write
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_new_file_gets_the_permissions_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        target = tmp_path / "fig.png"
        atomic_write_text(target, "x")  # mkstemp alone would leave 0600
        assert target.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)
