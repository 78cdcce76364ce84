"""PSPNet with a dilated ResNet50 backbone (docs/method.md#model, paper Fig. 1).

    image (B, 3, H, W)
      -> stem        3x3 conv-BN-ReLU x3 (3->64 s2, 64->64, 64->128) + 3x3 max-pool s2
      -> layer1..4   torchvision ResNet50, layer3/4 dilated 2/4 (output stride 8)
      -> ppm         bins (1, 2, 3, 6) x 512 ch, upsampled and concatenated -> 4096 ch
      -> head        3x3 4096->512, BN, ReLU, Dropout2d, 1x1 512->K      -> main (B, K, H, W)
      layer3 -> aux_head 3x3 1024->256, BN, ReLU, Dropout2d, 1x1 256->K  -> aux  (B, K, H, W)

Choices the paper leaves open (docs/method.md#model, brackets), made as the public PSPNet code does:

- The 1x1 pyramid bin: ``ppm_bin1_bn=True`` (the ``paper`` preset) gives it conv-BN-ReLU like
  every other bin, as the paper's ``Pyramid_pooling`` listing (section 3.4) has it; at the
  listing's batch 8 the BN normalises over 8 values per channel. ``False`` (the default, and
  ``smoke``) drops the BN and gives the conv a bias: a 1x1 pooled map holds a single value per
  channel at batch size 1, and ``BatchNorm2d`` refuses to train on that ("Expected more than 1
  value per channel"); segmentation_models_pytorch's ``PSPBlock`` drops it for that reason. The
  other bins (2x2 and up) always keep conv-BN-ReLU.
- ``freeze_backbone=True`` freezes ``layer1..layer4`` except the two convs the paper replaces
  (``layer1[0].conv1``, ``layer1[0].downsample[0]``); the stem, pyramid pooling and heads train.
  ``frozen_bn`` says what the frozen BatchNorm layers do under ``model.train()``
  (:meth:`PSPNet.train`): ``"train"`` (the paper's listing, ``requires_grad=False`` then
  ``model.train()``) normalises with batch statistics and updates the running mean/var;
  ``"eval"`` keeps them in eval mode, so the pretrained statistics never move.
- ``weights``: ``None`` = random init (torchvision's ResNet init), ``"imagenet"`` =
  ``ResNet50_Weights.DEFAULT`` through the torch hub cache, or a path to a local ``.pth`` file.
  A local file may hold a plain state dict or a checkpoint dict with the state dict under
  ``"state_dict"`` or ``"model"``; a ``"module."`` prefix (DDP) is stripped. Every key whose name
  and shape match a parameter or buffer of this model is loaded (a torchvision ResNet50 file fills
  layer1..4; a PSPNet checkpoint fills everything that matches); the keys that were not loaded
  are kept in ``model.weights_report``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import ResNet50_Weights, resnet50

from pspnet_core.config import ModelConfig
from pspnet_core.system.paths import resolve
from pspnet_core.system.torchfile import TorchFileError, load_torch_file
from pspnet_core.unet import UNet

PARTS = ("stem", "layer1", "layer2", "layer3", "layer4", "ppm", "head", "aux_head")
PPM_BINS = (1, 2, 3, 6)


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights are neither in the torch hub cache nor downloadable (offline)."""


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class PyramidPooling(nn.Module):
    """Pyramid pooling module (docs/method.md#model): 2048 -> 2048 + 4 x 512 = 4096 channels.
    ``bin1_bn``: the 1x1 bin is conv-BN-ReLU as in the paper's listing (section 3.4), else
    conv(bias)-ReLU (module docstring)."""

    def __init__(self, in_channels: int = 2048, bins: tuple[int, ...] = PPM_BINS, out: int = 512,
                 bin1_bn: bool = False):
        super().__init__()
        branches = []
        for b in bins:
            if b == 1 and not bin1_bn:  # one value per channel at batch 1 (module docstring)
                conv = [nn.Conv2d(in_channels, out, 1, bias=True), nn.ReLU(inplace=True)]
            else:
                conv = list(conv_bn_relu(in_channels, out, kernel=1))
            branches.append(nn.Sequential(nn.AdaptiveAvgPool2d(b), *conv))
        self.branches = nn.ModuleList(branches)
        self.out_channels = in_channels + len(bins) * out

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(branch(x), size=size, mode="bilinear", align_corners=True)  # (B,512,h,w)
            for branch in self.branches
        ]
        return torch.cat([x, *pooled], dim=1)  # (B, 4096, h, w)


def seg_head(cin: int, mid: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Decoder (docs/method.md#model): 3x3 cin->mid, BN, ReLU, Dropout2d, 1x1 mid->K."""
    return nn.Sequential(
        *conv_bn_relu(cin, mid, kernel=3),
        nn.Dropout2d(dropout),
        nn.Conv2d(mid, num_classes, 1),
    )


class PSPNet(nn.Module):
    """PSPNet (docs/method.md#model). ``forward`` returns ``(main, aux)`` logits at input size."""

    def __init__(
        self,
        num_classes: int = 21,
        weights: str | os.PathLike | None = None,
        freeze_backbone: bool = False,
        dropout: float = 0.1,
        frozen_bn: str = "train",
        output_stride: int = 8,
        ppm_bins: tuple[int, ...] = PPM_BINS,
        ppm_channels: int = 512,
        ppm_bin1_bn: bool = False,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if frozen_bn not in ("train", "eval"):
            raise ValueError(f"frozen_bn must be 'train' or 'eval', got {frozen_bn!r}")
        if output_stride not in (8, 32):
            raise ValueError(f"output_stride must be 8 or 32, got {output_stride!r}")
        self.num_classes = num_classes
        self.frozen_bn = frozen_bn
        self.output_stride = output_stride
        self.stem = nn.Sequential(
            conv_bn_relu(3, 64, stride=2),  # (B, 64, H/2, W/2)
            conv_bn_relu(64, 64),
            conv_bn_relu(64, 128),  # (B, 128, H/2, W/2)
            nn.MaxPool2d(3, stride=2, padding=1),  # (B, 128, H/4, W/4)
        )
        # zero_init_residual: each bottleneck starts as the identity (Goyal et al. 2017), so a
        # randomly initialised backbone (the offline smoke preset) does not blow up activations
        # before the BatchNorm running statistics settle; loaded weights overwrite it.
        # output stride 8: layer3/layer4 dilated (2, 4) instead of strided (the prose, the
        # official code); 32: the listing's plain resnet50 (docs/method.md#deviations)
        dilate = [False, True, True] if output_stride == 8 else [False, False, False]
        resnet = resnet50(weights=None, replace_stride_with_dilation=dilate,
                          zero_init_residual=True)
        # the stem outputs 128 channels, not 64: the paper replaces the first block's two inputs
        resnet.layer1[0].conv1 = nn.Conv2d(128, 64, 1, bias=False)
        resnet.layer1[0].downsample[0] = nn.Conv2d(128, 256, 1, bias=False)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.ppm = PyramidPooling(2048, tuple(ppm_bins), ppm_channels, ppm_bin1_bn)
        self.head = seg_head(self.ppm.out_channels, 512, num_classes, dropout)
        self.aux_head = seg_head(1024, 256, num_classes, dropout)
        self._init_new_layers()

        self.weights_report: dict[str, Any] = {"source": None, "loaded": 0, "not_loaded": []}
        if weights is not None:
            self.weights_report = load_weights(self, weights)
        if freeze_backbone:
            if weights is None:
                warnings.warn(
                    "freeze_backbone=True with weights=None freezes a randomly initialized "
                    "backbone",
                    stacklevel=2,
                )
            freeze_backbone_(self)

    def _init_new_layers(self) -> None:
        """Kaiming init for the layers the paper adds (torchvision inits the ResNet layers)."""
        new = [self.stem, self.ppm, self.head, self.aux_head]
        new += [self.layer1[0].conv1, self.layer1[0].downsample[0]]
        for part in new:
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> PSPNet:
        """Like ``nn.Module.train``; with ``frozen_bn="eval"`` BatchNorm layers whose parameters
        are frozen stay in eval mode, so transfer learning never moves the pretrained running
        statistics. With ``"train"`` (the listing) they train like every other layer."""
        super().train(mode)
        if mode and self.frozen_bn == "eval":
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
                    if not m.weight.requires_grad:
                        m.eval()
        return self

    def forward(self, x: Tensor, with_aux: bool | None = None) -> tuple[Tensor, Tensor | None]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 64:
            raise ValueError(f"input must be at least 64x64, got {tuple(x.shape[-2:])}")
        with_aux = self.training if with_aux is None else with_aux
        size = x.shape[-2:]
        x = self.stem(x)  # (B, 128, H/4, W/4)
        x = self.layer1(x)  # (B, 256, H/4, W/4)
        x = self.layer2(x)  # (B, 512, H/8, W/8)
        x3 = self.layer3(x)  # (B, 1024, H/8, W/8)  dilation 2 (stride 32: H/16)
        x = self.layer4(x3)  # (B, 2048, H/8, W/8)  dilation 4 (stride 32: H/32)
        x = self.ppm(x)  # (B, 2048 + bins x 512, H/8, W/8)
        main = upsample(self.head(x), size)  # (B, K, H/8, W/8) -> (B, K, H, W)
        aux = upsample(self.aux_head(x3), size) if with_aux else None  # (B, K, H, W)
        return main, aux


def upsample(x: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


# ---------------------------------------------------------------- transfer learning


def replaced_convs(model: PSPNet) -> list[nn.Module]:
    """The two convs of layer1[0] the paper replaces to take the stem's 128 channels."""
    return [model.layer1[0].conv1, model.layer1[0].downsample[0]]


def freeze_backbone_(model: PSPNet) -> None:
    """Freeze layer1..layer4 except the replaced convs (docs/method.md#model: transfer learning)."""
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        layer.requires_grad_(False)
    for conv in replaced_convs(model):
        conv.requires_grad_(True)
    model.train(model.training)  # re-apply: with frozen_bn="eval" frozen BN layers go to eval


def imagenet_cache_file() -> Path:
    """Where the torch hub cache keeps ResNet50_Weights.DEFAULT (honours ``TORCH_HOME``)."""
    url = ResNet50_Weights.DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _download(url: str) -> dict[str, Tensor]:
    """Fetch into the hub cache (tests monkeypatch this to simulate being offline)."""
    return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                              weights_only=True)


class WeightsFileError(TorchFileError):
    """A weights file is unsafe (a pickle that would run code), damaged, or does not cover the
    ResNet50 backbone; the message names the file and what to do."""


def imagenet_state_dict() -> dict[str, Tensor]:
    """ResNet50_Weights.DEFAULT from the hub cache, downloading it when missing."""
    path = imagenet_cache_file()
    if path.is_file():
        state = load_torch_file(
            path, what="the cached ImageNet weights file", error=WeightsFileError,
            remedy=f"delete {path} so that it is downloaded again, or put the original "
            f"{os.path.basename(path)} (from {ResNet50_Weights.DEFAULT.url}) there",
        )
        if not isinstance(state, dict):
            raise WeightsFileError(f"{path} does not hold a state dict; delete it to re-download")
        return state
    try:
        return _download(ResNet50_Weights.DEFAULT.url)
    except Exception as err:  # URLError, timeouts, SSL, HTTP errors: all mean "not available"
        raise WeightsUnavailableError(
            f"ImageNet weights for ResNet50 are not cached at {path} and could not be "
            f"downloaded ({type(err).__name__}: {err}). Either put the file "
            f"{os.path.basename(path)} there (from {ResNet50_Weights.DEFAULT.url}), "
            "or use weights=None (random init), "
            'or weights="/path/file.pth" (a local ResNet50 or PSPNet state dict).'
        ) from err


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A state dict from a local file: plain, or a checkpoint dict under "state_dict"/"model".
    Loaded with ``weights_only=True``: a file holding other Python objects is refused."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist; use weights=None, weights='imagenet' "
            "or the path of an existing .pth file"
        )
    remedy = ("replace it with a torchvision ResNet50 or PSPNet state dict, or use "
              "weights=None / weights='imagenet'")
    obj = load_torch_file(path, what="weights file", remedy=remedy, error=WeightsFileError)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsFileError(
            f"weights file {path} does not hold a state dict (got {type(obj).__name__}); {remedy}"
        )
    return {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}


def backbone_keys(model: nn.Module) -> list[str]:
    """The layer1..layer4 tensors a weights file must provide: every parameter and buffer of
    the four ResNet50 stages except BatchNorm batch counters and the two convs the paper
    replaces (their input channels differ from torchvision's)."""
    replaced = {"layer1.0.conv1.weight", "layer1.0.downsample.0.weight"}
    return [k for k in model.state_dict()
            if k.split(".")[0] in ("layer1", "layer2", "layer3", "layer4")
            and not k.endswith("num_batches_tracked") and k not in replaced]


def load_weights(model: PSPNet, weights: str | os.PathLike) -> dict[str, Any]:
    """Load every key whose name and shape match; return what was and was not loaded.

    The file must cover the whole ResNet50 backbone (:func:`backbone_keys`); otherwise a
    :class:`WeightsFileError` lists what is missing (e.g. a ResNet-18 file). For a torchvision
    ResNet50 file the keys not loaded are the ResNet stem (``conv1``, ``bn1``), ``fc`` and the
    two replaced convs (shape mismatch: 64 -> 128 input channels).
    """
    if weights == "imagenet":
        source, state = str(imagenet_cache_file()), imagenet_state_dict()
    else:
        source, state = str(weights), read_state_dict(weights)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in backbone_keys(model) if k not in matched]
    if missing:
        wrong = [k for k in missing if k in state]
        shown = ", ".join(missing[:8]) + (f" ... and {len(missing) - 8} more"
                                          if len(missing) > 8 else "")
        raise WeightsFileError(
            f"{source} does not cover the ResNet50 backbone: {len(missing)} of "
            f"{len(backbone_keys(model))} layer1..layer4 tensors are missing"
            + (f" ({len(wrong)} of them present with another shape)" if wrong else "")
            + f": {shown}; expected a torchvision ResNet50 or a PSPNet state dict"
        )
    model.load_state_dict(matched, strict=False)
    not_loaded = sorted(set(state) - set(matched))
    return {"source": source, "loaded": len(matched), "not_loaded": not_loaded}


def build_model(model_cfg: ModelConfig, num_classes: int, arch: str = "pspnet") -> nn.Module:
    """The run's network (``RunConfig.arch``) from the preset's ``model`` section.

    ``pspnet``: a relative weights path hangs from the project root (``paths.resolve``).
    ``unet``: the U-Net baseline of width ``model.unet_width``, always randomly initialised
    (``weights``, ``freeze_backbone``, ``frozen_bn`` and ``dropout`` are PSPNet's).
    """
    if arch == "unet":
        return UNet(num_classes, model_cfg.unet_width)
    if arch != "pspnet":
        raise ValueError(f"arch must be 'pspnet' or 'unet', got {arch!r}")
    weights = model_cfg.weights
    if weights is not None and weights != "imagenet":
        weights = str(resolve(weights))
    return PSPNet(num_classes, weights, model_cfg.freeze_backbone, model_cfg.dropout,
                  model_cfg.frozen_bn, model_cfg.output_stride, model_cfg.ppm_bins,
                  model_cfg.ppm_channels, model_cfg.ppm_bin1_bn)


# ---------------------------------------------------------------- inspection


def count_parameters(model: nn.Module) -> dict[str, int]:
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def parameters_by_part(model: PSPNet) -> list[dict[str, Any]]:
    """One row per part (stem, layer1..4, ppm, head, aux_head) with total/trainable counts."""
    return [{"part": part, **count_parameters(getattr(model, part))} for part in PARTS]


@torch.no_grad()
def trace_shapes(model: PSPNet, height: int, width: int) -> list[dict[str, Any]]:
    """Output shape of every part for one (1, 3, height, width) image, measured by forward hooks
    on a real forward pass in eval mode (aux head included). Figure 1 of the paper."""
    rows: list[dict[str, Any]] = []
    hooks = [
        getattr(model, part).register_forward_hook(
            lambda _m, _i, out, part=part: rows.append({"part": part, "shape": tuple(out.shape)})
        )
        for part in PARTS
    ]
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()
        x = torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype)
        main, aux = model(x, with_aux=True)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows.insert(0, {"part": "input", "shape": tuple(x.shape)})
    rows.append({"part": "main", "shape": tuple(main.shape)})
    rows.append({"part": "aux", "shape": tuple(aux.shape)})
    return rows
