"""Print parameters and FLOPs per image of every model config (conf/model/*.yaml).

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on one image in eval mode:
matmuls, convolutions and attention, with a multiply-add counted as 2 FLOPs
(MACs = FLOPs / 2); normalisation, activations and additions are not counted.
FlopCounterMode does not see the CPU kernel of scaled_dot_product_attention, so
attention is counted on the ViT's manual path (the same math, see the tests).

    python scripts/model_summary.py [--img-size 64] [--num-classes 10]
"""

import argparse
import sys

import torch
from hydra import compose, initialize_config_dir
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vision_exp.builder import build
from vision_exp.conf_dir import CONF_DIR
from vision_exp.errors import UserError
from vision_exp.models import Attention

MODEL_CONFIGS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def build_model(name: str, num_classes: int = 10, img_size: int = 64, overrides: tuple[str, ...] = ()) -> nn.Module:
    """Instantiate conf/model/<name>.yaml, with the data fields it interpolates set by hand.

    overrides: extra Hydra overrides, e.g. ("model.depth=2",).
    """
    data = [f"+data.num_classes={num_classes}", f"+data.img_size={img_size}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(overrides=[f"+model={name}", *data, *overrides])
    return build(cfg.model, "model")  # a size that cannot work is one ConfigError


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, img_size: int) -> int:
    for module in model.modules():
        if isinstance(module, Attention):
            module.impl = "manual"  # SDPA's CPU kernel has no FLOP formula
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.randn(1, 3, img_size, img_size))
    return counter.get_total_flops()


def summarize(num_classes: int = 10, img_size: int = 64) -> list[dict]:
    rows = []
    for name in MODEL_CONFIGS:
        model = build_model(name, num_classes, img_size)
        rows.append(
            dict(
                config=name,
                params=count_parameters(model),
                flops=flops_per_image(model, img_size),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    args = parser.parse_args()
    print(f"{args.img_size}x{args.img_size} px, {args.num_classes} classes; FLOPs = 2 x MACs, one image")
    print(f"{'config':<12}{'params':>12}{'GFLOPs':>10}")
    try:
        rows = summarize(args.num_classes, args.img_size)
    except UserError as exc:  # e.g. a ViT patch size that does not divide --img-size
        sys.exit(f"error: {exc}")
    for row in rows:
        print(f"{row['config']:<12}{row['params']:>12,}{row['flops'] / 1e9:>10.3f}")


if __name__ == "__main__":
    main()
