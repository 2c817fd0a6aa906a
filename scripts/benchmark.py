"""Speed benchmarks, by section; `--sections models` is the only one so far.

models: time of one training step (forward + backward + AdamW step) of our models
against equivalent reference implementations holding the same weights, on the same
inputs in the same process: vit_v1 vs timm's VisionTransformer, resnet_v1 vs
torchvision's BasicBlock network (also in channels_last). Ours and the reference
alternate within each repeat (and swap who goes first) so that a noisy machine
slows both alike; the median over repeats is reported.

    python scripts/benchmark.py --sections models [--quick] [--json PATH] [--threads N]

A new section is a function(args) -> dict of rows (each a dict) added to SECTIONS.
"""

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vision_exp.models.references import timm_vit_from, torchvision_resnet_from

from model_summary import build_model  # a sibling script: scripts/ is on sys.path

# Tiny sizes for --quick (a smoke test of the machinery, not a measurement).
QUICK_OVERRIDES = {
    "vit_v1": ("model.embed_dim=32", "model.depth=1", "model.num_heads=2"),
    "resnet_v1": ("model.widths=[8,16,32,64]",),
}


def time_training_steps(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> float:
    """Seconds per training step, averaged over `steps` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def compare(ours: nn.Module, reference: nn.Module, images: torch.Tensor, labels: torch.Tensor, args) -> dict:
    """Median seconds per step of both models, measured alternately."""
    models = {"ours": ours.train(), "reference": reference.train()}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}
    for name in models:  # warm-up: allocator, oneDNN primitive caches, optimizer state
        time_training_steps(models[name], optimizers[name], images, labels, args.warmup)
    times = {name: [] for name in models}
    for repeat in range(args.repeats):
        order = list(models) if repeat % 2 == 0 else list(reversed(models))
        for name in order:
            times[name].append(time_training_steps(models[name], optimizers[name], images, labels, args.steps))
    ours_s, ref_s = statistics.median(times["ours"]), statistics.median(times["reference"])
    batch = images.shape[0]
    return dict(
        ours_s_per_step=ours_s,
        reference_s_per_step=ref_s,
        ours_images_per_s=batch / ours_s,
        reference_images_per_s=batch / ref_s,
        ratio_ours_over_reference=ours_s / ref_s,
    )


def models_section(args) -> dict:
    img_size = 32 if args.quick else args.img_size
    images = torch.randn(args.batch_size, 3, img_size, img_size)
    labels = torch.randint(0, 10, (args.batch_size,))

    def build(name: str) -> nn.Module:
        torch.manual_seed(0)
        return build_model(name, 10, img_size, QUICK_OVERRIDES[name] if args.quick else ())

    cases: list[tuple[str, str, Callable[[nn.Module], nn.Module], torch.memory_format]] = [
        ("vit_v1", "timm VisionTransformer", timm_vit_from, torch.contiguous_format),
        ("resnet_v1", "torchvision BasicBlock", torchvision_resnet_from, torch.contiguous_format),
        ("resnet_v1", "torchvision BasicBlock", torchvision_resnet_from, torch.channels_last),
    ]
    rows = {}
    for config, reference_name, make_reference, memory_format in cases:
        ours = build(config).to(memory_format=memory_format)
        reference = make_reference(ours).to(memory_format=memory_format)
        x = images.contiguous(memory_format=memory_format)
        key = config if memory_format == torch.contiguous_format else f"{config}_channels_last"
        rows[key] = dict(reference=reference_name, **compare(ours, reference, x, labels, args))
    return rows


SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {"models": models_section}


def print_table(section: str, rows: dict) -> None:
    print(f"\n[{section}]")
    print(f"{'case':<26}{'reference':<24}{'ours img/s':>12}{'ref img/s':>12}{'ours/ref time':>15}")
    for case, row in rows.items():
        print(
            f"{case:<26}{row['reference']:<24}{row['ours_images_per_s']:>12.1f}"
            f"{row['reference_images_per_s']:>12.1f}{row['ratio_ours_over_reference']:>15.3f}"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="tiny models and batches, 1 repeat: a smoke test")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timing")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.repeats, args.steps, args.warmup = 4, 1, 1, 1
    torch.set_num_threads(args.threads)

    results = dict(
        meta=dict(
            torch=torch.__version__,
            machine=platform.processor() or platform.machine(),
            threads=args.threads,
            quick=args.quick,
            batch_size=args.batch_size,
            img_size=32 if args.quick else args.img_size,
            repeats=args.repeats,
            steps_per_repeat=args.steps,
        )
    )
    for section in args.sections:
        results[section] = SECTIONS[section](args)
        print_table(section, results[section])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
