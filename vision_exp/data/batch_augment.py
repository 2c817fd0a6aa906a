"""Augmentation of whole uint8 batches on the training device (the cached loader's path).

One call turns a (B, S, S, 3) uint8 batch into a normalised (B, 3, H, W) float batch: per-image
random-resized-crop boxes and flips are drawn with one vectorised sampler and applied by a
single `grid_sample`, so no per-image Python work sits on the training path. The sampler
follows torchvision's RandomResizedCrop (area in `scale`, log-uniform aspect `ratio`, ten tries,
then a centre crop). It crops the stored square, the centre of each image at the stored size, while
the folder loader crops the whole decoded (non-square) image: the same distribution of boxes over a
smaller field and from fewer pixels (a small crop is upsampled more, so it is blurrier). The two loaders
evaluate on the same pixels but are different training distributions: compare runs within one loader.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


class Normalize:
    """Pixel values 0-255 (uint8 or float) -> (x / 255 - mean) / std as float, folded into one multiply-add."""

    def __init__(self, mean, std, device) -> None:
        std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, device=device).view(1, 3, 1, 1) / std_t

    def __call__(self, x_uint8_nchw: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x_uint8_nchw.float(), self.scale)


def sample_crop_boxes(batch: int, height: int, width: int, scale, ratio, generator, device, tries: int = 10):
    """(B, 4) boxes (x0, y0, w, h) in pixels, drawn like torchvision's RandomResizedCrop."""
    area = height * width
    target_area = area * torch.empty(batch, tries, device=device).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(batch, tries, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(target_area * aspect).round()
    h = torch.sqrt(target_area / aspect).round()
    ok = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first_ok = torch.where(ok.any(1), ok.float().argmax(1), torch.full((batch,), -1, device=device))
    # Fallback when no try fits: the largest centred crop with the ratio clamped to `ratio`.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    pick = first_ok.clamp(min=0).unsqueeze(1)
    w = torch.where(first_ok >= 0, w.gather(1, pick).squeeze(1), torch.full_like(first_ok, fw, dtype=w.dtype))
    h = torch.where(first_ok >= 0, h.gather(1, pick).squeeze(1), torch.full_like(first_ok, fh, dtype=h.dtype))
    u = torch.rand(batch, 2, device=device, generator=generator)
    x0 = torch.where(first_ok >= 0, torch.floor(u[:, 0] * (width - w + 1)), (width - fw) // 2)  # the fallback is centred
    y0 = torch.where(first_ok >= 0, torch.floor(u[:, 1] * (height - h + 1)), (height - fh) // 2)
    return torch.stack([x0, y0, w, h], 1)


def centre_offset(size: int, crop: float) -> int:
    """Where a centred crop starts, rounded as torchvision's CenterCrop rounds it."""
    return int(round((size - crop) / 2.0))


class TrainBatchTransform:
    """Random-resized-crop + horizontal flip + normalise on a uint8 NHWC batch. Without the random crop,
    the centre crop that evaluation takes (img_size of the image resized to `eval_resize`), with flips."""

    def __init__(self, out_size: int, scale, ratio, hflip: float, random_resized_crop: bool, mean, std, device,
                 eval_resize: Optional[int] = None) -> None:
        self.out_size, self.scale, self.ratio, self.hflip = out_size, scale, ratio, hflip
        self.random_resized_crop = random_resized_crop
        self.eval_resize = eval_resize
        self.normalize = Normalize(mean, std, device)

    def __call__(self, x: torch.Tensor, generator: torch.Generator, positions: Optional[torch.Tensor] = None,
                 batch_total: Optional[int] = None) -> torch.Tensor:
        """Augment `x`, whose images sit at `positions` of a global batch of `batch_total` (one
        rank's shard): the random draws are made for the whole global batch, so every image gets
        the same crop and flip whatever the number of ranks."""
        batch, height, width, _ = x.shape
        total = batch_total or batch
        if self.random_resized_crop:
            boxes = sample_crop_boxes(total, height, width, self.scale, self.ratio, generator, x.device)
        else:  # the eval transform's centre crop, its offset rounded in resized pixels, in stored pixels
            resized_height, resized_width = self.eval_resize or height, self.eval_resize or width
            scale_y, scale_x = height / resized_height, width / resized_width
            top, left = centre_offset(resized_height, self.out_size), centre_offset(resized_width, self.out_size)
            box = [left * scale_x, top * scale_y, self.out_size * scale_x, self.out_size * scale_y]
            boxes = torch.tensor([box], device=x.device, dtype=torch.float).expand(total, 4)
        flip = torch.rand(total, device=x.device, generator=generator) < self.hflip
        if positions is not None:
            boxes, flip = boxes[positions], flip[positions]
        # Bilinear weights sum to one (border padding), so normalising the sampled batch equals sampling the
        # normalised one, on fewer pixels.
        return self.normalize(resized_boxes(x.permute(0, 3, 1, 2).float(), boxes, flip, self.out_size))


def resized_boxes(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, out_size: int) -> torch.Tensor:
    """Each image's box (x0, y0, w, h) of `images` (B, C, H, W), resized to out_size and mirrored where `flip`.

    Bilinear sampling of a box much larger than the output skips pixels (aliasing: stripes become moire),
    which torchvision's antialiased resize does not. A box more than 1.41x the output per side is sampled
    from the batch halved (antialiased) as often as brings it within 0.71-1.41x: mip-mapping, one halving
    per level. The stored squares of the default cache (img_size / crop_pct, 73 px for 64) never need it:
    one grid_sample as before, and no extra work for whichever size, decided from the shapes alone (no sync).
    """
    _, _, height, width = images.shape
    grid = crop_grid(boxes, flip, width, height, out_size)
    levels = round(math.log2(max(height, width) / out_size))  # of the largest possible box, the whole image

    def sample(source: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)

    resized = sample(images)
    if levels <= 0:
        return resized
    level = torch.log2(boxes[:, 2:].amax(1) / out_size).round().clamp(0, levels)
    source = images
    for k in range(1, levels + 1):
        size = (max(1, round(source.shape[2] / 2)), max(1, round(source.shape[3] / 2)))  # whole extent: grid unchanged
        source = F.interpolate(source, size=size, mode="bilinear", antialias=True, align_corners=False)
        resized = torch.where((level == k)[:, None, None, None], sample(source), resized)
    return resized


def crop_grid(boxes: torch.Tensor, flip: torch.Tensor, width: int, height: int, out_size: int) -> torch.Tensor:
    """grid_sample's (B, out, out, 2) input coordinates in [-1, 1] (align_corners=False) for axis-aligned
    boxes (x0, y0, w, h), mirrored where `flip`. A box of width w at x0 has centre (2 * x0 + w) / W - 1 and
    half-extent w / W. What affine_grid gives for these scale-and-shift matrices, built from one row and
    one column of coordinates: affine_grid's general matrix product took a third of the CPU path's time."""
    x0, y0, w, h = boxes.unbind(1)
    pixel_centres = (torch.arange(out_size, device=boxes.device, dtype=boxes.dtype) * 2 + 1) / out_size - 1
    scale_x = torch.where(flip, -w / width, w / width)
    columns = scale_x[:, None] * pixel_centres + ((2 * x0 + w) / width - 1)[:, None]
    rows = (h / height)[:, None] * pixel_centres + ((2 * y0 + h) / height - 1)[:, None]
    batch = boxes.shape[0]
    return torch.stack((columns[:, None, :].expand(batch, out_size, out_size),
                        rows[:, :, None].expand(batch, out_size, out_size)), dim=-1)


class EvalBatchTransform:
    """Resize to `eval_resize` + centre crop + normalise: the cached form of torchvision's Resize then
    CenterCrop. The stored squares are usually eval_resize already (no resize); a data.cache_size of
    another size is resized here, so that it changes how images are stored, not how much of them is seen."""

    def __init__(self, out_size: int, mean, std, device, eval_resize: Optional[int] = None) -> None:
        self.out_size, self.eval_resize = out_size, eval_resize
        self.normalize = Normalize(mean, std, device)

    def __call__(self, x: torch.Tensor, generator=None, positions=None, batch_total=None) -> torch.Tensor:
        _, height, width, _ = x.shape
        x = x.permute(0, 3, 1, 2)
        if self.eval_resize and self.eval_resize != height:
            x = F.interpolate(x.float(), size=(self.eval_resize, self.eval_resize), mode="bilinear", antialias=True,
                              align_corners=False)
            height = width = self.eval_resize
        top, left = centre_offset(height, self.out_size), centre_offset(width, self.out_size)
        return self.normalize(x[:, :, top : top + self.out_size, left : left + self.out_size])  # the crop alone
