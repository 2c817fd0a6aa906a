"""Probes of translation symmetry: how far a network is from shift equivariance/invariance.

A function f of images is shift-equivariant if shifting the input shifts the output,
f(T_s x) = T_{s/stride} f(x) (stride: how much f downsamples), and shift-invariant if
f(T_s x) = f(x). Shifts are circular (torch.roll), so no content leaves the image and
an exactly symmetric network gives errors at float rounding level.
"""

from collections.abc import Callable, Iterable

import torch

from .vit import ViT

Shift = tuple[int, int]
ImageFn = Callable[[torch.Tensor], torch.Tensor]


def shift(x: torch.Tensor, s: Shift) -> torch.Tensor:
    """Circular shift of the last two (spatial) dims by s = (rows, cols)."""
    return torch.roll(x, shifts=s, dims=(-2, -1))


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@torch.no_grad()
def shift_equivariance_error(fn: ImageFn, x: torch.Tensor, shifts: Iterable[Shift], stride: int = 1) -> float:
    """max over shifts s of ||f(T_s x) - T_{s/stride} f(x)|| / ||f(x)||; f returns (..., h, w) maps."""
    out = fn(x)
    errors = []
    for s in shifts:
        if s[0] % stride or s[1] % stride:
            raise ValueError(f"shift {s} is not a multiple of the stride {stride}")
        errors.append(_relative_error(fn(shift(x, s)), shift(out, (s[0] // stride, s[1] // stride))))
    return max(errors)


@torch.no_grad()
def shift_invariance_error(fn: ImageFn, x: torch.Tensor, shifts: Iterable[Shift]) -> float:
    """max over shifts s of ||f(T_s x) - f(x)|| / ||f(x)||."""
    out = fn(x)
    return max(_relative_error(fn(shift(x, s)), out) for s in shifts)


def pixel_tokens(token_fn: Callable[[torch.Tensor], torch.Tensor]) -> ImageFn:
    """Run a token function (B, N, D) -> (B, N, D) on every pixel of a (B, D, H, W) map as a token.

    This is a ViT on patch-size-1 tokens without position embeddings; the result is
    reshaped back to (B, D, H, W) so it can be shifted like an image.
    """

    def fn(x: torch.Tensor) -> torch.Tensor:
        B, D, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, D), row-major like ViT patches
        return token_fn(tokens).transpose(1, 2).reshape(B, D, H, W)

    return fn


def vit_patch_token_map(model: ViT) -> ImageFn:
    """Images -> the ViT's final patch tokens as a (B, dim, grid, grid) map (stride = patch size)."""

    def fn(images: torch.Tensor) -> torch.Tensor:
        tokens = model.forward_features(images)[:, 1:]  # drop the class token
        grid = model.img_size // model.patch_size
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid, grid)

    return fn


def global_average(fn: ImageFn) -> ImageFn:
    """Average a map over its spatial dims: an equivariant map becomes invariant."""
    return lambda x: fn(x).mean(dim=(-2, -1))
