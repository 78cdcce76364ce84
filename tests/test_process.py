"""process.freeze_imports: the entry points freeze what their imports made, only when they run
as a program or in a notebook kernel, never in a caller's process."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import time

import pytest
from tiny_preset import subprocess_env, write_tiny

from pspnet_core.train import cli as train


def test_freeze_imports_moves_live_objects_to_the_permanent_generation():
    code = ("import gc; from pspnet_core.system import process; before = gc.get_freeze_count(); "
            "process.freeze_imports(); print(before, gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    before, after = map(int, out)
    assert before == 0 and after > 1_000  # only the interpreter's own modules are loaded here


def test_pspnet_train_as_a_program_freezes_and_called_with_argv_does_not(tmp_path):
    params = write_tiny(tmp_path)
    # as a program: main() reads sys.argv, as the console script and `python -m` do
    code = ("import gc, sys; from pspnet_core.train import cli as train; "
            f"sys.argv = ['pspnet-train', '--params', {str(params)!r}, '--list']; "
            "rc = train.main(); print('FROZEN', rc, gc.get_freeze_count())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env=subprocess_env(tmp_path), timeout=300)
    last = proc.stdout.strip().splitlines()[-1].split()
    assert last[:2] == ["FROZEN", "0"] and int(last[2]) > 100_000, proc.stdout + proc.stderr
    # called by a test (argv given): this process's objects stay collectable
    before = gc.get_freeze_count()
    assert train.main(["--params", str(params), "--list"]) == 0
    assert gc.get_freeze_count() == before


def test_notebook_setup_freezes_in_a_kernel_and_not_in_a_plain_process(tmp_path, monkeypatch):
    import nbformat
    import papermill as pm

    params = write_tiny(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import gc\n"
        "from pspnet_core.study.notebook import setup\n"
        f"before = gc.get_freeze_count(); setup({str(params)!r}, announce=False)\n"
        "print('FROZEN', before, gc.get_freeze_count())")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, tmp_path / "freeze.ipynb")
    monkeypatch.setenv("PSPNET_HOME", str(tmp_path))
    out = pm.execute_notebook(str(tmp_path / "freeze.ipynb"), str(tmp_path / "out.ipynb"),
                              kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    text = "".join(o.get("text", "") for o in out.cells[0].outputs)
    _, before, after = text.split()
    assert int(before) == 0 and int(after) > 10_000  # IPython and pspnet_core.config

    # a plain Python process (no IPython shell; this pytest worker may hold one from another
    # test, so it is not the place to look) calling setup freezes nothing
    code = ("import gc; from pspnet_core.study.notebook import setup; "
            f"setup({str(params)!r}, announce=False); print('FROZEN', gc.get_freeze_count())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env=subprocess_env(tmp_path), timeout=300)
    assert proc.stdout.split()[-2:] == ["FROZEN", "0"], proc.stdout + proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG)")
def test_a_child_dies_with_its_parent_even_by_sigkill():
    """What a SIGKILLed pspnet-study does to its pspnet-train child (study.train_runs): the
    child gets SIGTERM from the kernel instead of training on, orphaned."""
    parent = (
        "import os, signal, subprocess, sys\n"
        "from pspnet_core.system import process\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                         preexec_fn=process.die_with_parent)\n"
        "print(child.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == -signal.SIGKILL
    pid = int(out.stdout.split()[0])
    for _ in range(100):  # the kernel signals at once; allow a loaded machine 10 s
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid), f"child {pid} outlived its SIGKILLed parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
