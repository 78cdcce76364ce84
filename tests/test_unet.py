"""The U-Net baseline (docs/method.md#model): shapes at odd and paper sizes, PSPNet's forward
signature, one training step, parameter count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pspnet_core.config import ModelConfig, load_params, resolve_run
from pspnet_core.losses import main_and_total
from pspnet_core.model import build_model, count_parameters
from pspnet_core.train.grid import get_run
from pspnet_core.unet import UNet


@pytest.mark.parametrize("size", [(97, 97), (65, 80), (473, 473)])
def test_output_at_input_resolution(size):
    torch.manual_seed(0)
    m = UNet(num_classes=21, width=4).eval()
    with torch.no_grad():
        main, aux = m(torch.randn(1, 3, *size), with_aux=True)
    assert main.shape == (1, 21, *size) and aux is None
    assert torch.isfinite(main).all()


def test_default_width_97_train_mode_and_signature():
    torch.manual_seed(0)
    m = build_model(ModelConfig(), 21, arch="unet").train()
    assert isinstance(m, UNet) and m.width == ModelConfig().unet_width == 16
    main, aux = m(torch.randn(2, 3, 97, 97))
    assert main.shape == (2, 21, 97, 97) and aux is None
    counts = count_parameters(m)
    print(f"U-Net width {m.width}: {counts['total']:,} parameters")  # pytest -s shows it
    assert counts["total"] == counts["trainable"]
    # the classic U-Net (width 64) has ~31M parameters; width 16 is ~1/16 of that
    assert 1_500_000 < counts["total"] < 2_500_000
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3)]
    assert len(convs) == 2 * 9  # 5 encoder + 4 decoder double convs
    assert max(c.out_channels for c in convs) == 16 * 16


def test_one_training_step_reduces_loss():
    torch.manual_seed(0)
    m = UNet(num_classes=3, width=8).train()
    x = torch.randn(4, 3, 64, 64)
    y = torch.randint(0, 3, (4, 64, 64))
    y[:, :4] = 255  # ignore pixels, as VOC borders
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    main_loss, total = main_and_total(m(x, with_aux=True), y, 0.4)
    assert torch.equal(main_loss, total)  # no aux head: aux_weight does not apply
    opt.zero_grad()
    total.backward()
    opt.step()
    with torch.no_grad():
        after, _ = main_and_total(m(x), y, 0.4)
    assert float(after) < float(total.detach()) - 1e-3


def test_rejects_bad_input():
    m = UNet(2, width=2)
    with pytest.raises(ValueError, match="at least 16x16"):
        m(torch.randn(1, 3, 15, 40))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        m(torch.randn(3, 32, 32))


def test_unet_none_is_a_default_run():
    cfg = load_params("smoke")
    rc = resolve_run(cfg, "unet_none")
    assert (rc.arch, rc.task, rc.optimizer, rc.regime) == ("unet", "voc", "sgd", "none")
    assert resolve_run(cfg, "sgd_none").arch == "pspnet"


@pytest.mark.slow
def test_unet_run_trains_and_reloads_as_unet(tmp_path):
    """engine.fit builds the run's arch; analysis.load_model rebuilds it from the checkpoint."""
    from tiny_preset import write_tiny

    from pspnet_core.results import analysis

    params = write_tiny(tmp_path, train={"epochs": 1},
                        runs={"unet_none": {"task": "voc", "optimizer": "sgd", "regime": "none",
                                            "arch": "unet"}})
    run = get_run(load_params(params), "unet_none")
    assert run.done and len(run.history) == 1
    m = analysis.load_model(run, "cpu")
    assert isinstance(m, UNet) and not m.training
    with torch.no_grad():
        main, aux = m(torch.randn(1, 3, 65, 65))
    assert main.shape == (1, 21, 65, 65) and aux is None
