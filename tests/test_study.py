"""pspnet_core.study: plans, kernels, real papermill runs of throwaway notebooks; sanitize.cfg."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pspnet_core.store import studystate
from pspnet_core.study import cli, execute, plan, reproduce, storing
from pspnet_core.system.paths import SOURCE_ROOT
from pspnet_core.train.progress import format_epoch_line, format_resume_line

PARAMS_CELL = 'preset = "smoke"\noverrides = {}'


def _nb(path: Path, *sources: str, extra_params: str = "", markdown: bool = True) -> Path:
    params = new_code_cell(PARAMS_CELL + extra_params)
    params.metadata["tags"] = ["parameters"]
    cells = [new_markdown_cell("# throwaway")] if markdown else []
    cells += [params] + [new_code_cell(s) for s in sources]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def notebooks(tmp_path):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    figs = tmp_path / "figures" / "smoke"
    _nb(
        nb_dir / "01_figure.ipynb",
        "import os\nfrom matplotlib.figure import Figure\nfrom pspnet_core.results import plots\n"
        "fig = Figure()\nfig.subplots().plot([0, 1])\n"
        f"plots.save_figure(fig, os.environ.get('PSPNET_STUDY_FIGURES', {str(figs)!r}), "
        "'fig01_test')\n"
        "print('preset', preset, 'overrides', overrides)",
    )
    _nb(
        nb_dir / "02_fail.ipynb",
        "raise ValueError('boom in cell two')",
        "print('never')",
        markdown=False,
    )
    _nb(
        nb_dir / "03_learning_curves.ipynb",
        "print('optimizer is', optimizer)",
        extra_params='\noptimizer = "sgd"',
    )
    (nb_dir / "notes.ipynb").write_text("not a study notebook")  # no NN_ prefix: ignored
    return nb_dir, figs


def test_plan_variants_and_only(notebooks):
    nb_dir, _ = notebooks
    names = [j.name for j in plan.plan(nb_dir)]
    assert names == ["01_figure", "02_fail", "03_learning_curves-sgd", "03_learning_curves-adam"]
    jobs = plan.plan(nb_dir, ["03"])
    assert [j.parameters for j in jobs] == [{"optimizer": "sgd"}, {"optimizer": "adam"}]
    assert [j.name for j in plan.plan(nb_dir, "01, 02")] == ["01_figure", "02_fail"]
    assert [j.name for j in plan.plan(nb_dir, ["01", "02_f"])] == ["01_figure", "02_fail"]
    with pytest.raises(plan.StudyError, match="matches no notebook.*01_figure"):
        plan.plan(nb_dir, "9")
    with pytest.raises(plan.StudyError, match="no notebooks"):
        plan.plan(nb_dir / "missing")


def test_choose_kernel_falls_back():
    logs = []
    assert execute.choose_kernel("no-such-kernel-xyz", logs.append) == "python3"
    assert "not installed" in logs[0]
    assert execute.choose_kernel("python3", logs.append) == "python3"


def test_bad_preset_is_a_study_error(notebooks, tmp_path):
    nb_dir, _ = notebooks
    with pytest.raises(plan.StudyError, match="no preset"):
        execute.run_study("no_such_preset", notebooks_dir=nb_dir, outputs_dir=tmp_path / "o")


@pytest.mark.slow
def test_run_study_success_then_failure(notebooks, tmp_path):
    nb_dir, figs = notebooks
    out = tmp_path / "outputs" / "smoke"
    logs: list[str] = []
    common = dict(
        notebooks_dir=nb_dir,
        outputs_dir=out,
        figures_dir=figs,
        kernel="python3",
        progress_bar=False,
        log=logs.append,
        train_first=False,  # these stand-in notebooks read no run (training: test_explore.py)
    )
    res = execute.run_study("smoke", only=["01", "03"], overrides={"train.epochs": 2}, **common)
    assert res.ok and res.error is None
    assert [r.job.name for r in res.results] == [
        "01_figure",
        "03_learning_curves-sgd",
        "03_learning_curves-adam",
    ]
    # a partial study (only): its figures beside its outputs, the reference folder untouched
    assert (out / "figures" / "fig01_test.png").is_file() and not figs.exists()
    for name in ("01_figure", "03_learning_curves-sgd", "03_learning_curves-adam"):
        assert (out / f"{name}.ipynb").is_file() and (out / f"{name}.html").is_file()
    adam = nbformat.read(out / "03_learning_curves-adam.ipynb", as_version=4)
    outputs = "".join(
        o.get("text", "") for c in adam.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "optimizer is adam" in outputs
    first = nbformat.read(out / "01_figure.ipynb", as_version=4)
    assert "'train.epochs': 2" in str(first.cells)
    assert any(re.match(r"\[1/3\] 01_figure: ok in \d+\.\d s", line) for line in logs)
    assert "total wall time" in logs[-1]

    index = res.index.read_text()
    links = re.findall(r'(?:href|src)="([^"]+)"', index)
    assert "01_figure.html" in links and "03_learning_curves-adam.html" in links
    assert "figures/fig01_test.png" in links
    for link in links:  # relative links resolve
        assert not link.startswith("/") and (out / link).exists(), link

    # the full study stops at 02_fail, names it and its cell, and still writes the index
    logs.clear()
    res = execute.run_study("smoke", **common)
    assert not res.ok
    assert [r.status for r in res.results] == ["ok", "failed"]
    err = res.error
    assert "notebook 02_fail.ipynb failed in cell 2 " in err and "In [3]" in err
    assert "ValueError: boom in cell two" in err and "raise ValueError" in err
    index = res.index.read_text()
    assert 'class="failed"' in index and "boom in cell two" in index
    assert "02_fail.html" in index
    # the 03 outputs of the first study are not this study's: kept (nothing is deleted before
    # its replacement exists), listed as not run and linked as an earlier study's
    assert re.search(r'<td><a href="03_learning_curves-sgd.html">03_learning_curves-sgd</a>'
                     r'</td><td><a href="03_learning_curves-sgd.ipynb">.ipynb</a></td>'
                     r"<td>not run</td>.*an earlier study", index)
    assert len(list(out.glob("03_learning_curves-*"))) == 4
    assert "fig01_test <em>(from an earlier study)</em>" not in index  # rewritten by 01
    assert "FAILED" in logs[-1]
    table = "\n".join(logs)
    assert re.search(r"01_figure +ok +\d+\.\d s +1 \(fig01_test\)", table)
    assert re.search(r"02_fail +failed +\d+\.\d s +0", table)
    assert re.search(r"03_learning_curves-adam +not run", table)


def test_main_exit_codes(monkeypatch, capsys):
    class Fake:
        ok = False
        error = "notebook 02_fail.ipynb failed in cell 2"

    seen = {}

    def fake_run(preset, **kw):
        seen.update(kw, preset=preset)
        return Fake()

    monkeypatch.setattr(cli, "run_study", fake_run)
    code = cli.main(
        [
            "--params",
            "paper",
            "--only",
            "03",
            "--only",
            "04,05",
            "--set",
            "train.epochs=2",
            "--override",
            "sgd.lr=0.5",
            "--kernel",
            "k",
        ]
    )
    assert code == 1 and "02_fail.ipynb" in capsys.readouterr().err
    assert seen["preset"] == "paper" and seen["only"] == ["03", "04,05"]
    # --set and its alias --override fill the same overrides, values read as YAML
    assert seen["overrides"] == {"train.epochs": 2, "sgd.lr": 0.5} and seen["kernel"] == "k"
    Fake.ok = True
    assert cli.main([]) == 0 and seen["preset"] == "smoke"

    def bad(preset, **kw):
        raise plan.StudyError("no preset 'x'")

    monkeypatch.setattr(cli, "run_study", bad)
    assert cli.main(["--params", "x"]) == 2


def test_sanitize_cfg():
    from nbval.plugin import get_sanitize_patterns

    text = (SOURCE_ROOT / "notebooks" / "sanitize.cfg").read_text()
    patterns = get_sanitize_patterns(text)
    assert len(patterns) >= 8

    def clean(s: str) -> str:
        for regex, replace in patterns:
            s = re.sub(regex, replace, s)
        return s

    assert clean("runs/sgd_mix-0123456789ab/history.csv") == "runs/sgd_mix-RUNHASH/history.csv"
    assert clean("epoch 3 took 12.3 s") == "epoch 3 took DURATION"
    assert clean("speed 4.56 it/s") == "speed RATE"
    assert clean("<Model at 0x7f3a2c1b9d90>") == "<Model at 0xADDRESS>"
    assert clean("saved /tmp/pytest-1/figs/a.png") == "saved ABSPATH"
    assert clean("started 2024-05-01T12:30:05.123") == "started DATE"
    assert clean("at 12:30:05") == "at TIME"
    # what must stay comparable is left alone
    stable = "stem (1, 128, 25, 25) 112,448 params, 23 layers, 3 shapes"
    assert clean(stable) == stable


# ---------------------------------------------------------------- progress and truthful outputs

def epoch_line(k: int, seconds: float, seed: int = 0) -> str:
    """The engine's epoch line (``progress.format_epoch_line``) of epoch k/4 of sgd_mix."""
    return format_epoch_line("sgd_mix", seed, k, 4, train_loss=1.2, heldout_loss=1.3,
                             metric="mIoU", metric_value=0.1, lr=1e-2, seconds=seconds)


def test_epoch_echo_forwards_epoch_lines_with_eta():
    logs: list[str] = []
    echo = execute.EpochEcho(logs.append)
    echo.write("epoch 1 train:  50%|#####     | 1/2 [00:01<00:01]\r")  # a bar redraw: dropped
    echo.write(epoch_line(1, 10.0) + "\n" + epoch_line(2, 20.0)[:20])
    echo.write(epoch_line(2, 20.0)[20:] + "\nsome other print\n")
    echo.write(format_resume_line("sgd_mix", 0, 2, "runs/x") + "\n")
    echo.write(epoch_line(1, 90.0, seed=1) + "\n")  # another seed: its own ETA
    echo.write(epoch_line(4, 9.0))
    echo.close()
    assert logs == [
        "    " + epoch_line(1, 10.0) + " ETA 30s",
        "    " + epoch_line(2, 20.0) + " ETA 30s",  # 2 left x mean 15 s
        "    sgd_mix s0: resuming after epoch 2 from runs/x",
        "    " + epoch_line(1, 90.0, seed=1) + " ETA 4m30s",  # 3 left x 90 s
        "    " + epoch_line(4, 9.0),  # the last epoch: no ETA
    ]
    err: list[str] = []
    echo = execute.EpochEcho(err.append, "stderr")
    echo.write("42%|####  | 5/12\r43%|####  | 6/12\rUserWarning: careful\nplain noise\n")
    assert err == ["    [stderr] UserWarning: careful"]


def test_summary_table():
    job = plan.Job(Path("01_a.ipynb"), "01_a")
    res = [execute.JobResult(job, "ok", 3.25, figures=["fig01_x", "fig02_y"])]
    text = execute.summary_table(res, [plan.Job(Path("02_b.ipynb"), "02_b")])
    lines = text.splitlines()
    assert lines[0].split() == ["notebook", "status", "time", "figures", "written"]
    assert lines[2].split() == ["01_a", "ok", "3.2", "s", "2", "(fig01_x,", "fig02_y)"]
    assert lines[3].split() == ["02_b", "not", "run"]


def test_interrupt_marks_the_notebook_and_keeps_the_earlier_outputs(notebooks, tmp_path,
                                                                     monkeypatch):
    """Ctrl-C in the second notebook: the index is rewritten (finally), the interrupt
    propagates, and nothing is deleted before its replacement exists: each notebook executes
    into a hidden file that replaces its earlier output only when it ends, the interrupted and
    the never-run notebooks keep their earlier study's outputs, linked and said so."""
    import papermill

    nb_dir, figs = notebooks
    out = tmp_path / "outputs" / "smoke"
    out.mkdir(parents=True)
    names = ["01_figure", "02_fail", "03_learning_curves-sgd", "03_learning_curves-adam"]
    for name in names:  # an earlier, successful study
        (out / f"{name}.html").write_text("old")
        (out / f"{name}.ipynb").write_text("{}")
    (out / "index.html").write_text("old index: everything ok")
    seen_index: list[str] = []

    def fake_execute(src, dst, **kw):
        seen_index.append((out / "index.html").read_text())
        assert Path(dst).name.startswith(".") and Path(dst).parent == out  # not over the old
        assert kw["config"].KernelManager.transport == "ipc"
        if "02_fail" in src:
            Path(dst).write_text("half-written")
            raise KeyboardInterrupt
        nbformat.write(nbformat.read(src, as_version=4), dst)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        execute.run_study("smoke", notebooks_dir=nb_dir, outputs_dir=out, figures_dir=figs,
                          kernel="python3", log=logs.append, train_first=False)
    assert ('<td><a href="02_fail.html">02_fail</a></td><td><a href="02_fail.ipynb">.ipynb</a>'
            '</td><td>running</td>') in seen_index[1]
    assert '03_learning_curves-adam</a></td>' in seen_index[1] and "pending" in seen_index[1]
    index = (out / "index.html").read_text()
    assert '<tr class="ok"><td><a href="01_figure.html">' in index
    assert re.search(r'<tr class="interrupted"><td><a href="02_fail.html">02_fail</a>.*'
                     r"interrupted.*an earlier study", index, re.S)
    assert index.count("not run</td>") == 2 and "did not finish (interrupted)" in index
    assert (out / "01_figure.html").read_text() != "old"  # re-exported
    assert (out / "02_fail.html").read_text() == "old" and (out / "02_fail.ipynb").read_text() \
        == "{}"  # the earlier study's, kept
    assert not list(out.glob(".*.running.ipynb"))  # the interrupted half is not kept
    assert (out / "03_learning_curves-adam.html").read_text() == "old"
    assert studystate.index_state(out) == "interrupted"
    assert "FAILED" in logs[-1] and any("interrupted" in line for line in logs)


@pytest.mark.slow
def test_epoch_lines_reach_the_terminal_without_tcp_warning(tmp_path, capfd):
    """A notebook that prints like the engine (tqdm.write per epoch, bars in between): the
    epoch lines are logged as the cells run; the kernel runs over IPC (no TCP warning)."""
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    _nb(
        nb_dir / "01_train.ipynb",
        "import sys, time\nfrom tqdm import tqdm\n"
        "for k in (1, 2):\n"
        "    for _ in tqdm(range(3), file=sys.stderr, desc=f'epoch {k} train'):\n"
        "        time.sleep(0.01)\n"
        f"    tqdm.write({[epoch_line(1, 1.5), epoch_line(2, 1.5)]!r}[k - 1])\n"
        "print('not an epoch line')",
    )
    logs: list[str] = []
    res = execute.run_study("smoke", notebooks_dir=nb_dir, outputs_dir=tmp_path / "out",
                          figures_dir=tmp_path / "figs", kernel="python3", progress_bar=False,
                          export_html=False, log=logs.append, train_first=False)
    assert res.ok, res.error
    epoch_lines = [line for line in logs if " epoch " in line]
    assert epoch_lines == [
        "    " + epoch_line(1, 1.5) + " ETA 4s",
        "    " + epoch_line(2, 1.5) + " ETA 3s",
    ]
    assert not any("not an epoch line" in line or "it/s" in line for line in logs)
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out
    assert not list(nb_dir.glob("kernel-*")) and not list(tmp_path.glob("kernel-*"))


def test_clean_executed_drops_injected_cell_widgets_and_absolute_paths():
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    nb = new_notebook(cells=[
        new_code_cell("preset = 'smoke'", metadata={"tags": ["parameters"]}),
        new_code_cell("preset = 'smoke'", metadata={"tags": ["injected-parameters"]}),
        new_code_cell("train()", outputs=[
            new_output("display_data", data={storing.WIDGET_MIME: {"model_id": "x"},
                                             "text/plain": "bar"}),
            new_output("stream", name="stdout", text="sgd_mix epoch 1/2\n"),
        ]),
    ])
    nb.metadata["widgets"] = {"state": {"x": {}}}
    nb.metadata["papermill"] = {"input_path": "/abs/notebooks/03.ipynb",
                                "output_path": "/abs/outputs/smoke/03.ipynb",
                                "parameters": {"preset": "smoke"}}
    clean = storing.clean_executed(nbformat.from_dict(nb))
    assert [c.metadata.get("tags") for c in clean.cells] == [["parameters"], None]
    assert [o["output_type"] for o in clean.cells[1].outputs] == ["stream"]
    assert "widgets" not in clean.metadata
    assert clean.metadata["papermill"] == {"input_path": "03.ipynb", "output_path": "03.ipynb"}


def test_notebook_parameters_go_only_where_declared():
    from pspnet_core.study import plan

    jobs = plan.plan(only="03,04,05")
    assert {"run_name", "seed"} <= set(plan.declared_parameters(jobs[-1].notebook))
    per_job = plan.notebook_parameters(jobs, {"run_name": "sgd_none", "optimizer": "adam"})
    assert per_job["04_error_galleries"] == {"run_name": "sgd_none"}
    # 03 declares optimizer, but its variants set their own (they win in run_study)
    assert per_job["03_learning_curves-sgd"] == {"optimizer": "adam"}
    with pytest.raises(plan.StudyError, match="--param lr: no notebook .* declares it.*run_name"):
        plan.notebook_parameters(jobs, {"lr": 1})
    with pytest.raises(plan.StudyError, match="--param preset"):
        plan.notebook_parameters(jobs, {"preset": "paper"})


@pytest.mark.slow
def test_a_sigkilled_study_takes_its_trainer_along_and_its_index_says_interrupted(tmp_path):
    """kill -9 of pspnet-study while its pspnet-train child trains: the kernel signals the
    child (process.die_with_parent), which marks the index interrupted and exits; nothing
    trains on orphaned."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tiny_preset import subprocess_env, write_tiny

    home = tmp_path / "home"
    params = write_tiny(home, checkpoint_seconds=0, quiet=False,
                        train={"epochs": 50, "batch_size": 2, "eval_batch_size": 2,
                               "image_size": 65, "leaf_epochs": 2, "leaf_image_size": 65})
    proc = subprocess.Popen([sys.executable, "-m", "pspnet_core.study", "--params", str(params),
                             "--no-html", "--no-progress"],
                            env=subprocess_env(home, PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # until the child has trained an epoch
        if " epoch 1/50" in line:
            break
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                              text=True).stdout.split()
    assert children, "the study has no pspnet-train child"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    index = home / "outputs" / "tiny" / "index.html"
    for _ in range(300):  # the child saves nothing more, marks the index and exits
        alive = [c for c in children if Path(f"/proc/{c}").exists()
                 and Path(f"/proc/{c}/stat").read_text().split(")")[-1].split()[0] != "Z"]
        if not alive and "state=interrupted" in index.read_text():
            break
        time.sleep(0.1)
    assert not alive, f"pspnet-train {alive} trains on after its study was killed"
    page = index.read_text()
    assert "state=interrupted" in page and "study interrupted" in page


def test_the_reference_is_written_only_on_purpose(tmp_path, monkeypatch):
    """figures/<preset>/results.csv (what reruns are compared with) is written by a whole study
    when there is none, or with --update-reference; a rerun otherwise keeps it and puts its own
    numbers in outputs/<preset>/results.csv only."""
    from tiny_preset import write_tiny

    monkeypatch.setenv("PSPNET_HOME", str(tmp_path))
    preset = str(write_tiny(tmp_path))  # nothing trained: the table has empty numbers
    fig, out = tmp_path / "figs", tmp_path / "out"
    fig.mkdir()
    out.mkdir()
    lines: list[str] = []

    def rerun(**kw):
        reproduce.reproduction(preset, None, out, fig, fig, reproduce.reference_files(fig),
                               lines.append, **kw)

    rerun(write_reference=True)  # the first whole study: no reference yet
    first = (fig / "results.csv").read_text()
    assert first == (out / "results.csv").read_text()
    edited = first.replace("absent", "done")  # stands for an older reference
    assert edited != first
    (fig / "results.csv").write_text(edited)
    rerun(write_reference=False, mark_code=False)  # a rerun, e.g. --only 07
    assert (fig / "results.csv").read_text() == edited  # kept
    assert (out / "results.csv").read_text() == first
    assert any("is kept" in line and "--update-reference" in line for line in lines)
    rerun(write_reference=True)  # --update-reference
    assert (fig / "results.csv").read_text() == first


def test_a_partial_study_writes_its_figures_beside_its_outputs_not_over_the_reference(
        notebooks, tmp_path, monkeypatch):
    """--only or --param: the notebooks' figures go to outputs/<preset>/figures; a whole study
    writes the reference folder. A notebook outside a study (JupyterLab, papermill) writes to
    outputs/<preset>/figures too: notebook.figure_dir reads what the study told its kernels."""
    from pspnet_core.config import load_params
    from pspnet_core.store.studystate import FIGURES_ENV
    from pspnet_core.study import notebook

    nb_dir, figs = notebooks
    out = tmp_path / "outputs" / "smoke"
    whole = execute._prepare("smoke", None, nb_dir, out, figs, None, None)
    assert whole.fig_dir == whole.ref_dir == figs
    for only, params in (("01", None), (None, {"optimizer": "adam"})):
        part = execute._prepare("smoke", only, nb_dir, out, figs, None, params)
        assert part.ref_dir == figs and part.fig_dir == out / "figures"
    monkeypatch.setenv("PSPNET_HOME", str(tmp_path))
    cfg = load_params("smoke")
    monkeypatch.delenv(FIGURES_ENV, raising=False)
    assert notebook.figure_dir(cfg) == tmp_path / "outputs" / "smoke" / "figures"
    assert notebook.reference_dir(cfg) == tmp_path / "figures" / "smoke"
    monkeypatch.setenv(FIGURES_ENV, str(figs))
    assert notebook.figure_dir(cfg) == figs
