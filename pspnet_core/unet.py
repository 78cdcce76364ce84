"""The U-Net baseline (docs/method.md#model): the network the paper compares PSPNet with.

The classic 4-level encoder-decoder of Ronneberger et al. (2015), with BatchNorm and "same"
padding, at a width ``w`` (the original uses 64):

    image (B, 3, H, W)
      -> enc0        double 3x3 conv-BN-ReLU 3->w                      (B, w,   H,    W)
      -> enc1..enc4  2x2 max-pool, double conv 2^(i-1)w -> 2^i w        (B, 16w, H/16, W/16)
      -> dec4..dec1  2x2 transposed conv (channels halve, size doubles), pad to the skip's size,
                     concatenate the skip, double conv                  (B, w,   H,    W)
      -> head        1x1 conv w->K                                      -> main (B, K, H, W)

Odd sizes (97 -> 48 -> 24 -> 12 -> 6) lose a row or column at a max-pool; the transposed conv's
output is zero-padded (bottom/right) to the skip's size, so ``main`` is at input resolution for
every input of at least 16x16. ``forward(x, with_aux)`` has PSPNet's signature and returns
``(main, None)``: there is no auxiliary head, so ``model.aux_weight`` does not apply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 4


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU (the conv has no bias: BN follows)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Up(nn.Module):
    """2x2 transposed conv cin -> cin/2, pad to the skip, concatenate, double conv -> cin/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = double_conv(cin, cin // 2)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]  # 0 or 1
        if dh or dw:
            x = F.pad(x, (0, dw, 0, dh))
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net (module docstring). ``forward`` returns ``(main, None)`` logits at input size."""

    def __init__(self, num_classes: int = 21, width: int = 16):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.num_classes, self.width = num_classes, width
        chans = [width * 2**i for i in range(LEVELS + 1)]  # w, 2w, 4w, 8w, 16w
        self.enc = nn.ModuleList([double_conv(3, chans[0])])
        self.enc.extend(double_conv(chans[i], chans[i + 1]) for i in range(LEVELS))
        self.dec = nn.ModuleList(Up(chans[i + 1]) for i in reversed(range(LEVELS)))
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, with_aux: bool | None = None) -> tuple[Tensor, None]:
        """``with_aux`` is accepted for PSPNet's signature; there is no aux output."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 2**LEVELS:
            raise ValueError(f"input must be at least {2**LEVELS}x{2**LEVELS}, "
                             f"got {tuple(x.shape[-2:])}")
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()  # the bottleneck (B, 16w, H/16, W/16)
        for up in self.dec:
            x = up(x, skips.pop())
        return self.head(x), None
