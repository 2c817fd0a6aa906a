"""Reference networks (timm, torchvision) equivalent to ours, holding a copy of our weights.

Used by the tests (to prove that our models compute the same function) and by
scripts/benchmark.py (to compare speed on identical work).
"""

import copy

import timm.models.vision_transformer as timm_vit
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock

from .resnet import BasicBlock, ResNet
from .vit import Block, ViT


def timm_vit_from(model: ViT) -> timm_vit.VisionTransformer:
    """timm VisionTransformer of the same configuration as `model`, with its weights."""
    first = model.blocks[0]
    if type(first) is not Block:
        raise ValueError(f"timm has no block equivalent to {type(first).__name__}; only Block (v1)")
    if model.conv_stem is not None:
        raise ValueError("timm's VisionTransformer has no conv stem; only stem='patch'")
    dim = model.cls_token.shape[-1]
    p = model.patch_size
    in_chans = model.patch_embed.in_features // p**2
    reference = timm_vit.VisionTransformer(
        img_size=model.img_size,
        patch_size=p,
        in_chans=in_chans,
        num_classes=model.head.out_features,
        global_pool="token" if model.pool == "cls" else "avg",
        fc_norm=False,  # our final norm comes before pooling for both pools
        embed_dim=dim,
        depth=len(model.blocks),
        num_heads=first.attn.num_heads,
        mlp_ratio=(first.mlp.fc1.out_features + 0.5) / dim,  # timm truncates dim * ratio: land inside the width
        qkv_bias=True,
        class_token=True,
        pos_drop_rate=model.pos_drop.p,
        proj_drop_rate=first.mlp.drop1.p,
        attn_drop_rate=first.attn.attn_drop.p,
        drop_path_rate=model.blocks[-1].drop_path.drop_prob,
        weight_init="skip",  # every tensor is overwritten below
    )
    state = model.state_dict()
    # Our Linear over (C, p, p)-flattened patches is timm's Conv2d with kernel = stride = p.
    state["patch_embed.proj.weight"] = state.pop("patch_embed.weight").view(dim, in_chans, p, p)
    state["patch_embed.proj.bias"] = state.pop("patch_embed.bias")
    reference.load_state_dict(state)
    return reference.train(model.training)


def torchvision_resnet_from(model: ResNet) -> torchvision.models.ResNet:
    """torchvision's ResNet.forward over torchvision's BasicBlocks, with `model`'s layout and weights.

    torchvision hard-codes the imagenet stem and widths 64..512, so its stem, stages and
    head are replaced by ones of `model`'s shapes (stages of torchvision BasicBlocks).
    """
    if any(type(block) is not BasicBlock for block in model.modules() if isinstance(block, BasicBlock)):
        raise ValueError("torchvision only has the original BasicBlock (v1)")
    reference = torchvision.models.ResNet(TorchvisionBasicBlock, [1, 1, 1, 1])
    for name in ("conv1", "bn1", "maxpool", "fc"):
        setattr(reference, name, copy.deepcopy(getattr(model, name)))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        stage = [
            TorchvisionBasicBlock(
                b.conv1.in_channels, b.conv1.out_channels, b.conv1.stride, downsample=copy.deepcopy(b.downsample)
            )
            for b in getattr(model, name)
        ]
        setattr(reference, name, nn.Sequential(*stage))
    reference.load_state_dict(model.state_dict())
    return reference.train(model.training)
