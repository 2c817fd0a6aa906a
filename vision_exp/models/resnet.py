"""ResNet with BasicBlocks (He et al. 2015) and two reorderings of the same block.

The three block classes share one constructor, so a single state_dict loads into
any of them; only the order of operations in forward() differs. Attribute names
follow torchvision's ResNet, so torchvision's resnet18 weights load directly.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import resolve_block


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by a BatchNorm, whose shift makes a bias redundant.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Original residual block (He et al. 2015, post-activation).

    out = ReLU(shortcut(x) + BN2(conv2(ReLU(BN1(conv1(x))))))
    shortcut = identity, or downsample = conv1x1 + BN when stride or width changes.
    """

    # ResNet(zero_init_residual=True) zeroes bn2's scale so that each block starts as its shortcut; a block for
    # which that does not hold, or whose branch could then not train, says why here, and ResNet refuses it.
    zero_init_refusal: str | None = None

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)  # in place: saves a copy of every activation map
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return self.relu(out)


class BasicBlockv2(BasicBlock):
    """ReLU-only pre-activation (He et al. 2016, Fig. 4d).

    out = shortcut(x) + BN2(conv2(ReLU(BN1(conv1(ReLU(x))))))

    Why: no ReLU after the addition, so the identity path (and the projection shortcut,
    which reads the raw x) carries the signal unchanged from block to block, which is what
    makes pre-activation ResNets easy to optimise; He et al. measured 6.71% error vs 6.61%
    for the original block (CIFAR-10, ResNet-110). It is the pre-activation order that
    BasicBlock's modules can express: full pre-activation (BN-ReLU-conv-BN-ReLU-conv) needs
    a BN over the *input* channels, but bn1/bn2 are over the output channels, which differ
    in every downsampling block, so the state_dicts could not match.
    (Feeding the projection ReLU(x) instead would make a ResNet with one block per stage
    compute exactly BasicBlock's function.)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(F.relu(x))))  # not in place: x is the identity path
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return out


class BasicBlockv3(BasicBlock):
    """ReLU before addition (He et al. 2016, Fig. 4c).

    out = shortcut(x) + ReLU(BN2(conv2(ReLU(BN1(conv1(x))))))

    Why: same operations as BasicBlock with the last ReLU moved into the branch, so the
    identity path stays clean while the branch keeps a full conv-BN-ReLU pattern. Its cost
    is a non-negative residual (each block can only add), which He et al. measured as a
    small loss (7.84% vs 6.61% on CIFAR-10 ResNet-110), far from a training failure.
    ResNet refuses zero_init_residual with it: a zeroed bn2 makes the branch ReLU(0), and
    ReLU passes no gradient at 0, so no branch would ever train.
    """

    zero_init_refusal = "its branch ends in a ReLU, which passes no gradient at the zeroed output"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return out + self.shortcut(x)  # not in place: autograd keeps the ReLU output


BLOCKS = (BasicBlock, BasicBlockv2, BasicBlockv3)


class ResNet(nn.Module):
    """ResNet of BasicBlocks: stem, four stages (stride 2 from the second), average pool, fc.

    stem="imagenet": conv7x7/2 + BN + ReLU + maxpool3x3/2, as torchvision (224 px inputs).
    stem="small": conv3x3/stem_stride + BN + ReLU, no maxpool (CIFAR-style, 32-64 px inputs).

    The network is the same for every block type, so v1/v2/v3 have identical state_dicts.
    Consequence for the pre-activation-style blocks (v2, v3), whose output is not rectified:
    the network applies a parameter-free ReLU before pooling for every block type (the
    "extra activation after the last addition" of He et al. 2016; a no-op after BasicBlock,
    whose output is already a ReLU). The final BatchNorm a full pre-activation ResNet would
    also add cannot exist without changing the state_dict, so v2's pooled features are an
    un-normalised sum of residuals; the Linear head absorbs that scale. The stem's ReLU
    plays the role of the first block's pre-activation.
    """

    def __init__(
        self,
        block: str | type[BasicBlock] = "BasicBlock",
        layers: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        stem: str = "small",
        stem_stride: int = 1,
        num_classes: int = 10,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        block = resolve_block(block, BLOCKS)
        if zero_init_residual and block.zero_init_refusal:
            raise ValueError(f"zero_init_residual=True cannot train {block.__name__}: {block.zero_init_refusal}; use "
                             f"zero_init_residual=False or another block")
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(f"layers and widths need 4 stages, got {list(layers)} and {list(widths)}")
        if min(*layers, *widths, stem_stride) < 1:
            raise ValueError(f"layers {list(layers)}, widths {list(widths)} and stem_stride {stem_stride} must be at least 1")
        if stem == "imagenet":
            if stem_stride != 1:
                raise ValueError(f"stem_stride={stem_stride} applies to stem='small' only (the imagenet stem is fixed)")
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif stem == "small":
            self.conv1 = conv3x3(3, widths[0], stride=stem_stride)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"unknown stem {stem!r}; choose 'imagenet' or 'small'")
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)

        in_channels = widths[0]
        for i, (num_blocks, width) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            stage = [block(in_channels, width, stride)]
            stage += [block(width, width) for _ in range(num_blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            in_channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

        # torchvision's init: He-normal (fan_out) for convs, BN as the identity map.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each branch starts at zero: every block starts as its shortcut
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> last feature map (B, C, h, w), rectified."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # Not in place: after BasicBlock this input is a ReLU output autograd still needs.
        return F.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))
