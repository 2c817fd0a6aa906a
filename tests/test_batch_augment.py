"""Batched device-side augmentation: shapes, ranges, determinism, and agreement with torchvision."""

import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from vision_exp.data.batch_augment import EvalBatchTransform, Normalize, TrainBatchTransform, sample_crop_boxes

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CPU = torch.device("cpu")


def batch(n=16, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def test_normalize_matches_the_formula():
    x = batch(2, 4)
    out = Normalize(MEAN, STD, CPU)(x.permute(0, 3, 1, 2))
    ref = (x.permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ref)


def test_train_transform_shape_range_and_determinism():
    tf = TrainBatchTransform(16, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, True, MEAN, STD, CPU)
    x = batch()
    a = tf(x, torch.Generator().manual_seed(1))
    b = tf(x, torch.Generator().manual_seed(1))
    c = tf(x, torch.Generator().manual_seed(2))
    assert a.shape == (16, 3, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    lo = (0 - max(MEAN)) / min(STD)
    hi = (1 - min(MEAN)) / min(STD)
    assert a.min() >= lo - 1e-4 and a.max() <= hi + 1e-4


def test_full_crop_without_flip_is_the_identity_and_flip_mirrors():
    x = batch(4, 16)
    full = dict(out_size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), random_resized_crop=True, mean=MEAN, std=STD, device=CPU)
    plain = TrainBatchTransform(hflip=0.0, **full)(x, torch.Generator().manual_seed(0))
    flipped = TrainBatchTransform(hflip=1.0, **full)(x, torch.Generator().manual_seed(0))
    reference = Normalize(MEAN, STD, CPU)(x.permute(0, 3, 1, 2))
    torch.testing.assert_close(plain, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped, reference.flip(-1), atol=1e-5, rtol=0)


def test_crop_boxes_follow_random_resized_crop_bounds():
    g = torch.Generator().manual_seed(0)
    boxes = sample_crop_boxes(4000, 30, 40, (0.08, 1.0), (3 / 4, 4 / 3), g, CPU)
    x0, y0, w, h = boxes.unbind(1)
    assert (w >= 1).all() and (h >= 1).all() and (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= 40).all() and (y0 + h <= 30).all()
    area = (w * h) / (30 * 40)
    assert area.min() >= 0.06 and area.max() <= 1.0
    aspect = (w / h)
    inside = ((aspect >= 3 / 4 * 0.8) & (aspect <= 4 / 3 * 1.25)).float().mean()
    assert inside > 0.95
    # The mean area under torchvision's sampler is about (0.08 + 1) / 2, minus rejected large crops.
    assert 0.3 < area.mean() < 0.6


def test_crop_boxes_fall_back_to_torchvisions_centre_crop():
    """When no try fits (here every aspect ratio is wider than the square image), torchvision takes the largest
    crop of the clamped ratio at the centre, not at a random place."""
    g = torch.Generator().manual_seed(0)
    boxes = sample_crop_boxes(200, 16, 16, (0.95, 1.0), (1.5, 2.0), g, CPU)
    top, left, h, w = RandomResizedCrop.get_params(torch.zeros(3, 16, 16), [0.95, 1.0], [1.5, 2.0])
    assert torch.equal(boxes, torch.tensor([[left, top, w, h]], dtype=boxes.dtype).expand(200, 4))


def test_eval_transform_is_a_centre_crop():
    x = batch(3, 20)
    out = EvalBatchTransform(16, MEAN, STD, CPU)(x)
    reference = Normalize(MEAN, STD, CPU)(x[:, 2:18, 2:18, :].permute(0, 3, 1, 2))
    torch.testing.assert_close(out, reference)


def test_crop_grid_is_affine_grid_of_the_boxes_scale_and_shift():
    """The sampling grid is built from one row and one column of coordinates, not affine_grid's matrix
    product (a third of the CPU path's time): the same coordinates, mirrored boxes and a non-square field included."""
    import torch.nn.functional as F

    from vision_exp.data.batch_augment import crop_grid

    g = torch.Generator().manual_seed(0)
    height, width, out = 30, 40, 16
    boxes = sample_crop_boxes(64, height, width, (0.08, 1.0), (3 / 4, 4 / 3), g, CPU)
    flip = torch.rand(64, generator=g) < 0.5
    x0, y0, w, h = boxes.unbind(1)
    theta = torch.zeros(64, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -w / width, w / width)
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    expected = F.affine_grid(theta, [64, 3, out, out], align_corners=False)
    torch.testing.assert_close(crop_grid(boxes, flip, width, height, out), expected, atol=1e-6, rtol=0)


def test_a_crop_is_the_bilinear_resize_of_its_box():
    """Sampling then normalising (fewer pixels) gives torch's own bilinear resize of each box, normalised
    (stored squares under 1.41x the output, as the default cache's 73 px for 64; boxes no smaller than the output,
    whose upsampling would blend in the pixels beside the box)."""
    import torch.nn.functional as F

    x = batch(8, 16, seed=3)
    tf = TrainBatchTransform(12, (0.75, 1.0), (0.9, 1.1), 0.0, True, MEAN, STD, CPU)
    out = tf(x, torch.Generator().manual_seed(5))
    boxes = sample_crop_boxes(8, 16, 16, (0.75, 1.0), (0.9, 1.1), torch.Generator().manual_seed(5), CPU).long()
    normalized = Normalize(MEAN, STD, CPU)(x.permute(0, 3, 1, 2))
    for image, (x0, y0, w, h) in zip(range(8), boxes.tolist()):
        box = normalized[image : image + 1, :, y0 : y0 + h, x0 : x0 + w]
        resized = F.interpolate(box, size=(12, 12), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[image : image + 1], resized, atol=1e-4, rtol=0)


def stripes(n: int, size: int, width: int = 1) -> torch.Tensor:
    """(n, size, size, 3) uint8 black and white columns `width` pixels wide: the pattern a skipping resize turns
    into moire."""
    columns = (torch.arange(size) // width % 2 * 255).to(torch.uint8)
    return columns.view(1, 1, size, 1).expand(n, size, size, 3).contiguous()


def test_a_large_stored_image_is_cropped_without_aliasing_like_torchvisions_antialiased_resize():
    """data.cache_size=120 for 16 px crops: a box of the whole image is 7.5x the output. Its columns average to
    mid-grey under an antialiased resize (torchvision's RandomResizedCrop); bilinear sampling alone reads two
    columns of every 7.5 and keeps stripes."""
    import torch.nn.functional as F
    from torchvision.transforms.v2 import functional as TF

    x = stripes(4, 120)
    whole = dict(out_size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), random_resized_crop=True, mean=(0.5,) * 3,
                 std=(0.5,) * 3, device=CPU)
    ours = TrainBatchTransform(hflip=0.5, **whole)(x, torch.Generator().manual_seed(0))
    torchvision = TF.resize(x.permute(0, 3, 1, 2).float(), [16, 16], antialias=True) / 127.5 - 1
    torch.testing.assert_close(ours, torchvision, atol=0.07, rtol=0)  # the halvings differ at the edges only
    skipping = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(16, 16), mode="bilinear", align_corners=False)
    assert skipping.std() > 50 and ours.std() < 0.02


def test_a_box_between_two_levels_is_sampled_from_the_nearer_one():
    """A box 3.3x the output (120 px to 36) lies nearer two halvings (4x) than one (2x): sampled from the image
    halved twice, its two-pixel stripes average to grey as under torchvision's antialiased resize; sampled at 1.67x
    from the image halved once, they would come out as moire (pixels off by 0.47 of the range, std 0.33)."""
    from torchvision.transforms.v2 import functional as TF

    x = stripes(2, 120, width=2)
    whole = dict(out_size=36, scale=(1.0, 1.0), ratio=(1.0, 1.0), random_resized_crop=True, mean=(0.5,) * 3,
                 std=(0.5,) * 3, device=CPU)
    ours = TrainBatchTransform(hflip=0.0, **whole)(x, torch.Generator().manual_seed(0))
    torchvision = TF.resize(x.permute(0, 3, 1, 2).float(), [36, 36], antialias=True) / 127.5 - 1
    torch.testing.assert_close(ours, torchvision, atol=0.07, rtol=0)
    assert ours.std() < 0.1


def test_crops_of_a_large_stored_image_keep_their_box_at_every_level():
    """Halved copies cover the same extent: the crops of a smooth image (where aliasing cannot show) are
    the box's bilinear resize whatever level samples them, mirrored ones too."""
    import torch.nn.functional as F

    ramp = torch.linspace(0, 255, 96)
    smooth = (ramp.view(1, 96, 1) * 0.6 + ramp.view(1, 1, 96) * 0.4).to(torch.uint8)
    x = smooth.view(1, 96, 96, 1).expand(16, 96, 96, 3).contiguous()
    tf = TrainBatchTransform(12, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, True, (0.0,) * 3, (1.0,) * 3, CPU)
    out = tf(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    boxes = sample_crop_boxes(16, 96, 96, (0.08, 1.0), (3 / 4, 4 / 3), g, CPU).long()
    flip = torch.rand(16, generator=g) < 0.5
    assert (boxes[:, 2:].amax(1) > 12 * 2 ** 1.5).any()  # some boxes are sampled two or three halvings down
    for image, (x0, y0, w, h) in enumerate(boxes.tolist()):
        box = x[image : image + 1, y0 : y0 + h, x0 : x0 + w].permute(0, 3, 1, 2).float() / 255
        expected = F.interpolate(box, size=(12, 12), mode="bilinear", align_corners=False, antialias=True)
        expected = expected.flip(-1) if flip[image] else expected
        torch.testing.assert_close(out[image : image + 1], expected, atol=0.02, rtol=0)


def test_without_random_crops_a_square_stored_at_twice_the_eval_size_gives_exactly_the_eval_crop():
    """Evaluation resizes 46 px to 23 and crops 16 from row 4 (rounded in resized pixels); training crops the
    same box in stored pixels, from row 8, not 7 (the offset rounded at the stored size)."""
    x = batch(4, 46)
    train = TrainBatchTransform(16, (0.08, 1.0), (3 / 4, 4 / 3), 0.0, False, MEAN, STD, CPU, eval_resize=23)
    evaluate = EvalBatchTransform(16, MEAN, STD, CPU, eval_resize=23)
    torch.testing.assert_close(train(x, torch.Generator().manual_seed(0)), evaluate(x), atol=1e-4, rtol=0)


def test_crop_boxes_are_distributed_as_torchvisions_random_resized_crop():
    """Same areas, aspect ratios (log-uniform: as many wide boxes as tall ones) and positions as torchvision's sampler,
    whose boxes reach every position, the right and bottom edges included."""
    height, width, n = 30, 40, 4000
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    ours = sample_crop_boxes(n, height, width, scale, ratio, torch.Generator().manual_seed(0), CPU)
    torch.manual_seed(0)
    image = torch.zeros(3, height, width)
    theirs = torch.tensor([RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(n)],
                          dtype=ours.dtype)[:, [1, 0, 3, 2]]  # (top, left, h, w) -> (x0, y0, w, h)
    quantiles = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=ours.dtype)
    for boxes in (ours, theirs):
        x0, y0, w, h = boxes.unbind(1)
        assert ((x0 + w == width) & (w < width)).any() and ((y0 + h == height) & (h < height)).any()
    full_height = [(boxes[:, 3] == height).double().mean().item() for boxes in (ours, theirs)]  # w <= width, h <= height fit
    assert full_height[0] == pytest.approx(full_height[1], abs=0.02) and full_height[1] > 0.03

    def statistics(boxes):
        x0, y0, w, h = boxes.unbind(1)
        centre_x, centre_y = (x0 + w / 2) / width, (y0 + h / 2) / height
        return [(w * h / (height * width)).quantile(quantiles), (w / h).log().quantile(quantiles),
                centre_x.quantile(quantiles), centre_y.quantile(quantiles)]

    for name, a, b in zip(("area", "log aspect", "centre x", "centre y"), statistics(ours), statistics(theirs)):
        torch.testing.assert_close(a, b, atol=0.04, rtol=0, msg=name)  # 4000 draws: within 0.025


def test_eval_transform_is_torchvisions_resize_and_centre_crop():
    """Odd margins: torchvision rounds the centre crop's offset (23 - 16 = 7 starts at 4, not 3), in resized pixels."""
    from torchvision.transforms.v2 import functional as TF

    for stored, eval_resize in ((23, None), (21, None), (46, 23), (40, 19)):
        x = batch(3, stored)
        out = EvalBatchTransform(16, MEAN, STD, CPU, eval_resize=eval_resize)(x)
        images = x.permute(0, 3, 1, 2).float()
        if eval_resize:
            images = TF.resize(images, [eval_resize, eval_resize], antialias=True)
        reference = Normalize(MEAN, STD, CPU)(TF.center_crop(images, [16, 16]))
        torch.testing.assert_close(out, reference, atol=1e-4, rtol=0, msg=f"{stored} px resized to {eval_resize}")


def test_a_shard_gets_the_crops_and_flips_its_images_get_in_the_whole_batch():
    """Under torchrun each rank augments its positions of the global batch: the same images as one process makes."""
    x = batch(8, 16)
    for random_resized_crop in (True, False):
        tf = TrainBatchTransform(12, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, random_resized_crop, MEAN, STD, CPU)
        whole = tf(x, torch.Generator().manual_seed(4))
        assert not torch.allclose(whole, tf(x, torch.Generator().manual_seed(5)))  # the draws matter
        for positions in (torch.tensor([0, 2, 4, 6]), torch.tensor([7, 1, 3])):
            part = tf(x[positions], torch.Generator().manual_seed(4), positions=positions, batch_total=8)
            torch.testing.assert_close(part, whole[positions], atol=1e-5, rtol=0)


def test_crop_boxes_fall_back_to_torchvisions_centre_crop_when_every_ratio_is_taller_than_the_image():
    """The other side of the clamp: with every aspect ratio taller than the image, the fallback is the full height
    and the widest ratio allowed, centred, as torchvision takes it."""
    g = torch.Generator().manual_seed(0)
    boxes = sample_crop_boxes(200, 16, 16, (0.95, 1.0), (0.5, 0.6), g, CPU)
    top, left, h, w = RandomResizedCrop.get_params(torch.zeros(3, 16, 16), [0.95, 1.0], [0.5, 0.6])
    assert torch.equal(boxes, torch.tensor([[left, top, w, h]], dtype=boxes.dtype).expand(200, 4))
