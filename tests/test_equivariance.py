"""The symmetry probes measure what theory predicts for convolutions, attention and pooling."""

import pytest
import torch

from vision_exp.models import Block, ViT
from vision_exp.models.probes import (
    global_average,
    pixel_tokens,
    shift,
    shift_equivariance_error,
    shift_invariance_error,
    vit_patch_token_map,
)

SHIFTS = [(1, 0), (0, 3), (5, 7)]


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.randn(2, 8, 12, 12)


def test_shift_is_circular():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    moved = shift(x, (1, 2))
    assert torch.equal(moved, torch.roll(x, (1, 2), (-2, -1))) and not torch.equal(moved, x)
    assert torch.equal(shift(moved, (2, 2)), x)  # three rows down, four columns right: all the way round


def test_circular_conv_is_shift_equivariant(images):
    conv = torch.nn.Conv2d(8, 4, 3, padding=1, padding_mode="circular")
    assert shift_equivariance_error(conv, images, SHIFTS) < 1e-5


def test_zero_padded_conv_is_not(images):
    conv = torch.nn.Conv2d(8, 4, 3, padding=1)
    assert shift_equivariance_error(conv, images, SHIFTS) > 1e-2


def test_global_pooling_turns_equivariance_into_invariance(images):
    conv = torch.nn.Conv2d(8, 4, 3, padding=1, padding_mode="circular")
    assert shift_invariance_error(conv, images, SHIFTS) > 0.1  # a shifted map is a different map
    assert shift_invariance_error(global_average(conv), images, SHIFTS) < 1e-5


def test_vit_block_is_permutation_equivariant_over_tokens():
    torch.manual_seed(0)
    block = Block(8, 2).eval()
    tokens = torch.randn(2, 10, 8)
    perm = torch.randperm(10)
    with torch.no_grad():
        torch.testing.assert_close(block(tokens[:, perm]), block(tokens)[:, perm], rtol=0, atol=1e-5)


def test_vit_block_on_pixel_tokens_is_shift_equivariant(images):
    block = Block(8, 2).eval()
    assert shift_equivariance_error(pixel_tokens(block), images, SHIFTS) < 1e-5


def test_position_embeddings_break_shift_equivariance(images):
    block = Block(8, 2).eval()
    positions = torch.randn(1, 12 * 12, 8)  # one embedding per pixel token
    with_positions = pixel_tokens(lambda tokens: block(tokens + positions))
    assert shift_equivariance_error(with_positions, images, SHIFTS) > 0.1


def test_vit_without_position_embeddings_is_invariant_to_patch_aligned_shifts():
    torch.manual_seed(0)
    model = ViT(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2).eval()
    x = torch.randn(2, 3, 16, 16)
    pooled = lambda images: model.pool_tokens(model.forward_features(images))  # noqa: E731
    aligned = [(4, 0), (0, 8), (12, 4)]

    assert shift_invariance_error(pooled, x, aligned) > 1e-3  # learned positions at init
    with torch.no_grad():
        model.pos_embed.zero_()
    assert shift_equivariance_error(vit_patch_token_map(model), x, aligned, stride=4) < 1e-5
    assert shift_invariance_error(pooled, x, aligned) < 1e-5
    assert shift_invariance_error(pooled, x, [(1, 0)]) > 1e-2  # patches cut differently


@pytest.mark.parametrize("bad", [(2, 0), (0, 2)])
def test_shift_must_be_a_multiple_of_the_stride(images, bad):
    with pytest.raises(ValueError, match="multiple of the stride 4"):
        shift_equivariance_error(lambda x: x, images, [bad], stride=4)


def test_errors_are_relative_to_the_unshifted_output():
    """f weighs column 1 twice: one pixel at (0, 0) shifted to (0, 1) gives f(T x) = 2 T f(x), so the errors
    are ||2 T f(x) - T f(x)|| and ||2 T f(x) - f(x)|| (sqrt 5) over ||f(x)|| = 1, as the docstrings say."""
    weight = torch.ones(4, 4)
    weight[:, 1] = 2.0
    x = torch.zeros(1, 1, 4, 4)
    x[..., 0, 0] = 1.0

    def column_1_twice(images):
        return images * weight

    assert shift_equivariance_error(column_1_twice, x, [(0, 1)]) == pytest.approx(1.0)
    assert shift_invariance_error(column_1_twice, x, [(0, 1)]) == pytest.approx(5**0.5)


def test_the_script_measures_the_symmetries_docs_equivariance_md_states():
    """scripts/equivariance.py itself (only its probes are tested above): exact where theory says so, broken
    where the docs say position embeddings, zero padding or unaligned shifts break it."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "scripts/equivariance.py", "--img-size", "32"], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {cells[0]: [float(c) for c in cells[1:]] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in done.stdout.splitlines()[2:])}
    exact, broken = 1e-5, 1e-3
    assert max(rows["Conv2d 3x3, circular padding"][1:]) < exact
    assert max(rows["ViT Block, pixel tokens"][1:]) < exact and rows["+ sincos position embeddings"][1] > broken
    assert rows["resnet_v1, zero padding"][0] == 16 and rows["resnet_v1, zero padding"][1] > broken
    assert rows["resnet_v1, circular padding"][1] < exact and rows["resnet_v1, circular padding"][3] > broken
    assert rows["vit_v1, no positions"][:3] == [8, pytest.approx(0, abs=exact), pytest.approx(0, abs=exact)]
    assert rows["vit_v1, no positions"][3] > broken and rows["vit_v1, sincos positions"][1] > broken


@pytest.mark.parametrize("size, message", [
    (40, "error: --img-size 40: resnet_v1's 3x3 feature map does not tile the image"),  # reported a stride of 13
    (30, "error: model: img_size 30 is not divisible by patch_size 8"),
])
def test_the_script_refuses_a_size_its_models_do_not_tile(size, message):
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "scripts/equivariance.py", "--img-size", str(size)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip().startswith(message) and not done.stdout, done.stderr


def test_the_error_over_several_shifts_is_that_of_the_worst_shift(images):
    """A probe reports the largest error among its shifts, so a symmetric shift (here no shift), first or last,
    hides nothing."""
    conv = torch.nn.Conv2d(8, 4, 3, padding=1)  # zero padding: neither equivariant nor invariant
    for probe in (shift_equivariance_error, shift_invariance_error):
        singles = [probe(conv, images, [s]) for s in SHIFTS]
        assert min(singles) > 1e-3
        assert probe(conv, images, [(0, 0), *SHIFTS, (0, 0)]) == pytest.approx(max(singles), rel=1e-6)
