"""PSPNet (docs/method.md#model): shapes, batch 1, frozen backbone, weights loading."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn
from torchvision.models import resnet50

from pspnet_core import model as model_mod
from pspnet_core.config import ModelConfig
from pspnet_core.model import (
    PSPNet,
    WeightsUnavailableError,
    build_model,
    count_parameters,
    imagenet_cache_file,
    parameters_by_part,
    trace_shapes,
)


@pytest.fixture(scope="module")
def net() -> PSPNet:
    torch.manual_seed(0)
    return PSPNet(num_classes=21)


def frozen_net(frozen_bn: str = "eval") -> PSPNet:
    with pytest.warns(UserWarning, match="randomly initialized"):
        return PSPNet(num_classes=21, freeze_backbone=True, frozen_bn=frozen_bn)


def test_473_gives_2048x60x60_feature_map(net):
    shapes = {r["part"]: r["shape"] for r in trace_shapes(net, 473, 473)}
    assert shapes["stem"] == (1, 128, 119, 119)
    assert shapes["layer3"] == (1, 1024, 60, 60)
    assert shapes["layer4"] == (1, 2048, 60, 60)
    assert shapes["ppm"] == (1, 4096, 60, 60)
    assert shapes["main"] == shapes["aux"] == (1, 21, 473, 473)
    assert net.training  # trace_shapes restores the mode it found


@pytest.mark.parametrize("size", [(64, 64), (65, 97), (97, 70)])
def test_train_outputs_at_input_resolution(net, size):
    net.train()
    main, aux = net(torch.randn(2, 3, *size))
    assert main.shape == aux.shape == (2, 21, *size)
    assert torch.isfinite(main).all() and torch.isfinite(aux).all()


def test_batch_size_one_trains():
    torch.manual_seed(0)
    m = PSPNet(num_classes=21).train()
    main, aux = m(torch.randn(1, 3, 64, 80))
    (main.mean() + aux.mean()).backward()
    assert main.shape == (1, 21, 64, 80)
    assert m.stem[0][0].weight.grad is not None


def test_one_class_output_and_aux_skipped_in_eval():
    m = PSPNet(num_classes=1).eval()
    with torch.no_grad():
        main, aux = m(torch.randn(2, 3, 65, 66))
        _, aux_forced = m(torch.randn(2, 3, 65, 66), with_aux=True)
    assert main.shape == (2, 1, 65, 66)
    assert aux is None
    assert aux_forced.shape == (2, 1, 65, 66)


def test_rejects_too_small_or_bad_input(net):
    with pytest.raises(ValueError, match="at least 64x64"):
        net(torch.randn(1, 3, 63, 100))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.randn(3, 64, 64))


def test_architecture_matches_paper(net):
    assert [s[0].out_channels for s in net.stem[:3]] == [64, 64, 128]
    assert net.stem[0][0].stride == (2, 2) and isinstance(net.stem[3], nn.MaxPool2d)
    assert net.layer1[0].conv1.in_channels == 128 and net.layer1[0].conv1.out_channels == 64
    assert net.layer1[0].downsample[0].in_channels == 128
    assert net.layer1[0].downsample[0].out_channels == 256
    assert net.layer3[1].conv2.dilation == (2, 2) and net.layer4[1].conv2.dilation == (4, 4)
    bins = [b[0].output_size for b in net.ppm.branches]
    assert bins == [1, 2, 3, 6]
    assert all(b[1].out_channels == 512 for b in net.ppm.branches)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.ppm.branches[0])  # 1x1 bin
    head_convs = [m for m in net.head if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in head_convs] == [
        (4096, 512, (3, 3)),
        (512, 21, (1, 1)),
    ]
    assert net.head[3].p == pytest.approx(0.1)
    aux_convs = [m for m in net.aux_head if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in aux_convs] == [(1024, 256), (256, 21)]


def test_parameter_counts(net):
    counts = count_parameters(net)
    parts = parameters_by_part(net)
    assert counts["total"] == counts["trainable"] == sum(p["total"] for p in parts)
    assert [p["part"] for p in parts] == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "ppm",
        "head",
        "aux_head",
    ]
    # torchvision's layer1..4 hold 23.5M parameters; ours differ only by the two replaced convs
    tv = resnet50()
    tv_layers = sum(p.numel() for n, p in tv.named_parameters() if n.startswith("layer"))
    ours = sum(p["total"] for p in parts if p["part"].startswith("layer"))
    assert ours - tv_layers == 64 * 64 + 64 * 256  # 128 instead of 64 input channels


def test_frozen_backbone_real_sgd_step():
    torch.manual_seed(0)
    m = frozen_net()
    m.train()
    bn = m.layer2[0].bn1
    assert not bn.training and m.stem[0][1].training  # frozen BN in eval, stem BN trains
    before = {k: v.clone() for k, v in m.state_dict().items()}
    trainable = count_parameters(m)["trainable"]
    replaced = 128 * 64 + 128 * 256
    layers = sum(p["total"] for p in parameters_by_part(m) if p["part"].startswith("layer"))
    assert trainable == count_parameters(m)["total"] - layers + replaced

    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    main, aux = m(torch.randn(2, 3, 65, 65))
    (main.square().mean() + 0.4 * aux.square().mean()).backward()
    opt.step()
    after = m.state_dict()

    def moved(key: str) -> bool:
        return not torch.equal(before[key], after[key])

    for key in before:
        if key.startswith("layer") and not key.startswith(
            ("layer1.0.conv1.", "layer1.0.downsample.0.")
        ):
            assert not moved(key), key  # frozen weights and BN running stats stay put
    assert moved("layer1.0.conv1.weight") and moved("layer1.0.downsample.0.weight")
    assert moved("stem.0.0.weight") and moved("head.4.weight") and moved("ppm.branches.0.1.bias")
    assert moved("stem.0.1.running_mean")  # trainable BN layers do update their statistics
    m.eval()
    assert not m.stem[0][1].training


def resnet50_file(path, scale: float = 1.0) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = {k: v * scale for k, v in resnet50().state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def no_download(url):
    raise urllib.error.URLError("offline (test)")


def test_imagenet_weights_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(model_mod, "_download", no_download)
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert imagenet_cache_file() == expected
    state = resnet50_file(expected)
    m = PSPNet(num_classes=21, weights="imagenet", freeze_backbone=True)
    own = m.state_dict()
    for key in ("layer1.0.conv2.weight", "layer2.3.bn3.running_var", "layer4.2.conv3.weight"):
        assert torch.equal(own[key], state[key]), key
    report = m.weights_report
    assert report["source"] == str(expected)
    assert {"conv1.weight", "bn1.weight", "fc.weight", "fc.bias"} <= set(report["not_loaded"])
    assert {"layer1.0.conv1.weight", "layer1.0.downsample.0.weight"} <= set(report["not_loaded"])
    assert not any(k.startswith(("layer2", "layer3", "layer4")) for k in report["not_loaded"])
    assert report["loaded"] == sum(k.startswith("layer") for k in state) - 2
    assert m.layer1[0].conv1.weight.shape == (64, 128, 1, 1)  # replaced conv kept its init


def test_imagenet_offline_error_names_cache_file_and_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(model_mod, "_download", no_download)
    with pytest.raises(WeightsUnavailableError) as err:
        PSPNet(num_classes=21, weights="imagenet")
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in msg
    assert "weights=None" in msg and 'weights="/path/file.pth"' in msg


def test_local_checkpoint_dict_and_build_model(tmp_path):
    path = tmp_path / "r50.pth"
    state = resnet50_file(path, scale=2.0)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    m = build_model(ModelConfig(weights=str(path), freeze_backbone=True, dropout=0.2), 1)
    assert torch.equal(m.state_dict()["layer3.5.conv2.weight"], state["layer3.5.conv2.weight"])
    assert m.num_classes == 1 and m.head[3].p == pytest.approx(0.2)
    assert not m.layer3[0].conv1.weight.requires_grad
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PSPNet(weights=tmp_path / "missing.pth")


# ---------------------------------------------------------------- model.frozen_bn: train | eval


def paper_model_cfg(**changes) -> ModelConfig:
    """The `paper` preset's model section, offline (no ImageNet weights in tests)."""
    from pspnet_core.config import load_params

    cfg = load_params("paper", {"model.weights": None, **changes}).model
    assert cfg.freeze_backbone and cfg.weights is None
    return cfg


def backbone_bns(m: PSPNet) -> list[nn.BatchNorm2d]:
    layers = (m.layer1, m.layer2, m.layer3, m.layer4)
    return [b for layer in layers for b in layer.modules() if isinstance(b, nn.BatchNorm2d)]


def test_paper_preset_frozen_bn_train_uses_batch_statistics():
    """The listing: requires_grad=False, then model.train(): frozen BNs are in training mode
    and their running statistics move with every forward pass (gamma/beta stay frozen)."""
    cfg = paper_model_cfg()
    assert cfg.frozen_bn == "train"
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="randomly initialized"):
        m = build_model(cfg, 21)
    m.train()
    bns = backbone_bns(m)
    assert len(bns) == 52 and all(b.training and not b.weight.requires_grad for b in bns)
    before = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("layer")}
    with torch.no_grad():
        m(torch.randn(2, 3, 65, 65))
    after = m.state_dict()
    for key in ("layer1.0.bn1.running_mean", "layer2.1.bn2.running_var",
                "layer4.2.bn3.running_mean"):
        assert not torch.equal(before[key], after[key]), key
    assert all(torch.equal(before[k], after[k]) for k in before if k.endswith((".weight", ".bias")))
    m.eval()
    assert not any(b.training for b in bns)


def test_paper_preset_frozen_bn_eval_keeps_statistics():
    cfg = paper_model_cfg(**{"model.frozen_bn": "eval"})
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="randomly initialized"):
        m = build_model(cfg, 21)
    m.train()
    assert not any(b.training for b in backbone_bns(m)) and m.stem[0][1].training
    before = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("layer")}
    with torch.no_grad():
        m(torch.randn(2, 3, 65, 65))
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical
    with pytest.raises(ValueError, match="frozen_bn"):
        PSPNet(num_classes=2, frozen_bn="fixed")


def test_build_model_dispatches_on_arch():
    from pspnet_core.unet import UNet

    assert isinstance(build_model(ModelConfig(unet_width=4), 3, arch="unet"), UNet)
    assert build_model(ModelConfig(unet_width=4), 3, arch="unet").width == 4
    with pytest.raises(ValueError, match="arch"):
        build_model(ModelConfig(), 3, arch="deeplab")


def test_output_stride_32_is_the_listings_plain_resnet():
    """model.output_stride: 32 = torchvision's resnet50() of the listing: 2048 x 15 x 15 at 473;
    8 = the prose's dilated 60 x 60 map."""
    for stride, side in ((32, 15), (8, 60)):
        net = build_model(ModelConfig(output_stride=stride), num_classes=3).eval()
        seen: dict = {}
        net.layer4.register_forward_hook(lambda m, i, o, seen=seen: seen.update(x=o.shape))
        with torch.no_grad():
            main, _ = net(torch.zeros(1, 3, 473, 473))
        assert tuple(seen["x"]) == (1, 2048, side, side)
        assert tuple(main.shape) == (1, 3, 473, 473)


def test_ppm_bins_and_channels_are_switches():
    net = build_model(ModelConfig(ppm_bins=(1, 3), ppm_channels=64), num_classes=2)
    assert len(net.ppm.branches) == 2 and net.ppm.out_channels == 2048 + 2 * 64


def test_ppm_bin1_bn_switch_gives_the_listings_conv_bn_relu():
    """model.ppm_bin1_bn: the paper's Pyramid_pooling (section 3.4) is conv(no bias)-BN-ReLU in
    every bin; without the switch the 1x1 bin is conv(bias)-ReLU and trains at batch 1."""
    from pspnet_core.model import PyramidPooling

    torch.manual_seed(0)
    x = torch.randn(4, 16, 6, 6)
    listing = PyramidPooling(16, (1, 2), out=8, bin1_bn=True).train()
    kinds = [type(m) for m in listing.branches[0]]
    assert kinds == [nn.AdaptiveAvgPool2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert listing.branches[0][1].bias is None
    y = listing(x)[:, 16:24]  # the 1x1 bin's 8 channels, upsampled
    # batch statistics over the 4 images: each channel's pooled value has mean 0 before ReLU
    pre = listing.branches[0][2](listing.branches[0][1](listing.branches[0][0](x)))
    assert torch.allclose(pre.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.equal(y[:, :, 0, 0], pre.relu()[:, :, 0, 0])
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        listing(x[:1])  # why the default drops it: batch 1 cannot train this BN
    plain = PyramidPooling(16, (1, 2), out=8).train()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.branches[0])
    assert plain.branches[0][1].bias is not None
    assert plain(x[:1]).shape == (1, 16 + 2 * 8, 6, 6)
    # the config switch reaches the network
    net = build_model(ModelConfig(ppm_bin1_bn=True, ppm_channels=8), num_classes=2)
    assert isinstance(net.ppm.branches[0][2], nn.BatchNorm2d)
    net = build_model(ModelConfig(ppm_channels=8), num_classes=2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.ppm.branches[0])
