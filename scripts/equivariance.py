"""Measure how far convolutions, attention and our two models are from translation symmetry.

Random inputs, random (untrained) weights, circular shifts. Equivariance: a shift of the
input shifts the feature map (by shift / stride). Invariance: the globally pooled
representation does not change. Errors are relative (||difference|| / ||output||);
~1e-7 is float rounding, i.e. exact symmetry.

    python scripts/equivariance.py
"""

import argparse
import sys

import torch
from torch import nn

from vision_exp.errors import UserError
from vision_exp.models import Block
from vision_exp.models.probes import (
    ImageFn,
    global_average,
    pixel_tokens,
    shift_equivariance_error,
    shift_invariance_error,
    vit_patch_token_map,
)
from vision_exp.models.vit import sincos_pos_embed

from model_summary import build_model  # a sibling script: scripts/ is on sys.path

UNALIGNED_SHIFTS = [(1, 0), (0, 1), (1, 1), (3, 5)]  # not multiples of any stride above 1


def aligned_shifts(stride: int) -> list[tuple[int, int]]:
    """Shifts by whole multiples of the stride: the only ones a strided map can follow."""
    return [(stride, 0), (0, 2 * stride), (3 * stride, stride)]


def with_circular_padding(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.padding_mode = "circular"
    return model


def probes(img_size: int) -> list[tuple[str, int, torch.Tensor, ImageFn, ImageFn]]:
    """(name, stride, input, feature-map fn, pooled fn) for every row of the table."""
    torch.manual_seed(0)
    images = torch.randn(4, 3, img_size, img_size)
    feature_map = torch.randn(4, 32, 16, 16)  # 256 "pixel tokens" of width 32

    conv = nn.Conv2d(3, 16, 3, padding=1, padding_mode="circular")
    transformer_block = Block(32, num_heads=4).eval()
    positions = sincos_pos_embed(32, 16)[1:]  # one embedding per pixel token, no class token
    block = pixel_tokens(transformer_block)
    block_with_positions = pixel_tokens(lambda tokens: transformer_block(tokens + positions))

    rows = [
        ("Conv2d 3x3, circular padding", 1, images, conv, global_average(conv)),
        ("ViT Block, pixel tokens", 1, feature_map, block, global_average(block)),
        ("  + sincos position embeddings", 1, feature_map, block_with_positions, global_average(block_with_positions)),
    ]
    for name, circular in (("resnet_v1, zero padding", False), ("resnet_v1, circular padding", True)):
        torch.manual_seed(0)
        resnet = build_model("resnet_v1", img_size=img_size).eval()
        if circular:
            with_circular_padding(resnet)
        size = resnet.forward_features(images).shape[-1]
        stride = img_size // size
        if size * stride != img_size:  # the map rounds up: no shift of the image moves it by whole cells
            sys.exit(f"error: --img-size {img_size}: resnet_v1's {size}x{size} feature map does not tile the image "
                     f"(its total stride does not divide {img_size}); choose a multiple of that stride, e.g. 64")
        rows.append((name, stride, images, resnet.forward_features, global_average(resnet.forward_features)))
    for name, overrides, zero_positions in (
        ("vit_v1, learned positions (init)", (), False),
        ("vit_v1, sincos positions", ("model.pos_embed=sincos",), False),
        ("vit_v1, no positions", (), True),
    ):
        torch.manual_seed(0)
        vit = build_model("vit_v1", img_size=img_size, overrides=overrides).eval()
        if zero_positions:
            with torch.no_grad():
                vit.pos_embed.zero_()

        def pooled(x, vit=vit):
            return vit.pool_tokens(vit.forward_features(x))

        rows.append((name, vit.patch_size, images, vit_patch_token_map(vit), pooled))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=64)
    args = parser.parse_args()
    try:
        rows = probes(args.img_size)
    except UserError as exc:  # e.g. a ViT patch size that does not divide --img-size
        sys.exit(f"error: {exc}")
    header = f"| {'model':<32} | stride | equivariance, aligned | invariance, aligned | invariance, unaligned |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name, stride, x, feature_fn, pooled_fn in rows:
        shifts = aligned_shifts(stride)
        equivariance = shift_equivariance_error(feature_fn, x, shifts, stride)
        invariance = shift_invariance_error(pooled_fn, x, shifts)
        invariance_unaligned = shift_invariance_error(pooled_fn, x, UNALIGNED_SHIFTS)
        print(f"| {name:<32} | {stride:>6} | {equivariance:>21.1e} | {invariance:>19.1e} | {invariance_unaligned:>21.1e} |")


if __name__ == "__main__":
    main()
