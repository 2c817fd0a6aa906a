"""Our ViT equals timm's VisionTransformer; the three block orders share weights but not the function."""

import re

import pytest
import timm.models.vision_transformer as timm_vit
import torch
import torch.nn.functional as F
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer_hybrid import ConvStem
from timm.optim import create_optimizer_v2

from vision_exp.models import Attention, Block, Blockv2, Blockv3, ViT
from vision_exp.models.references import timm_vit_from
from vision_exp.models.vit import BLOCKS, patchify, sincos_pos_embed

VARIANTS = list(BLOCKS)  # a block order added there gets every test of the family
TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def random_head(model: ViT) -> ViT:
    """The zero-initialised head would make every logit 0 and every other gradient 0."""
    torch.nn.init.normal_(model.head.weight, std=model.head.in_features**-0.5)
    return model


@pytest.mark.parametrize(
    "img_size,patch_size,embed_dim,depth,num_heads,pool,attn_impl",
    [
        (32, 4, 64, 2, 2, "cls", "sdpa"),
        (32, 8, 48, 1, 3, "cls", "manual"),
        (24, 4, 32, 3, 4, "avg", "sdpa"),
        (64, 16, 96, 2, 2, "avg", "manual"),
    ],
)
def test_vit_equals_timm_vision_transformer(img_size, patch_size, embed_dim, depth, num_heads, pool, attn_impl):
    torch.manual_seed(0)
    ours = ViT(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        num_classes=7,
        pool=pool,
        attn_impl=attn_impl,
    )
    reference = timm_vit_from(random_head(ours).eval())
    x = torch.randn(3, 3, img_size, img_size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("attn_impl", ["sdpa", "manual"])
def test_vit_equals_timm_in_training_with_every_dropout_and_drop_path(attn_impl):
    """Same seed, same random draws in the same order: equal outputs mean each dropout and drop-path sits
    where timm's does (after the position embedding, on attention probabilities, after proj, fc1 and fc2,
    on each residual branch) with timm's rates per block."""
    torch.manual_seed(0)
    ours = ViT(**{**TINY, "depth": 3}, dropout=0.2, attn_dropout=0.3, drop_path=0.4, attn_impl=attn_impl)
    reference = timm_vit_from(random_head(ours).train())
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(1)
    expected = reference(x)
    torch.manual_seed(1)
    got = ours(x)
    torch.manual_seed(2)
    assert not torch.allclose(ours(x), got, atol=1e-3)  # the draws do change the output
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_the_timm_reference_of_a_model_in_eval_mode_drops_nothing():
    """The reference takes our mode: in eval, a model with every dropout and drop-path equals it exactly,
    where a reference left in timm's default train mode would drop at random."""
    torch.manual_seed(0)
    ours = random_head(ViT(**TINY, dropout=0.2, attn_dropout=0.3, drop_path=0.4)).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(timm_vit_from(ours)(x), ours(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("block", VARIANTS)
def test_drop_path_drops_whole_branches_in_training_only(block):
    """Rate 1 drops every branch: the block is the identity in training, not in eval. Rate 0.5 decides per
    sample: in one batch some samples lose both branches (unchanged), others do not."""
    torch.manual_seed(0)
    x = torch.randn(32, 5, 16)
    always = block(16, 2, drop_path=1.0)
    with torch.no_grad():
        torch.testing.assert_close(always.train()(x), x, rtol=0, atol=0)
        assert not torch.allclose(always.eval()(x), x, atol=1e-3)
        changed = (block(16, 2, drop_path=0.5).train()(x) - x).flatten(1).abs().amax(1) > 0
    assert 0 < changed.sum() < len(x)


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_in_chans_sets_the_image_channels(stem):
    torch.manual_seed(0)
    model = random_head(ViT(in_chans=1, stem=stem, **TINY)).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
        if stem == "patch":
            torch.testing.assert_close(model(x), timm_vit_from(model)(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("block", ["Blockv2", "Blockv3"])
def test_timm_reference_refuses_reordered_blocks(block):
    with pytest.raises(ValueError, match=block):
        timm_vit_from(ViT(block=block, **TINY))


def test_timm_reference_refuses_the_conv_stem():
    with pytest.raises(ValueError, match="conv stem"):
        timm_vit_from(ViT(stem="conv", **TINY))


@pytest.mark.parametrize("patch_size,widths", [(2, [32]), (4, [16, 32]), (8, [8, 16, 32])])
def test_conv_stem_equals_timm_conv_stem_then_a_1x1_projection(patch_size, widths):
    """Xiao et al.'s stem: log2(patch) strided 3x3 conv-BN-ReLU with doubling widths, then patch_embed
    as their final 1x1 conv; timm's ConvStem with the same layers must compute the same tokens."""
    torch.manual_seed(0)
    ours = ViT(**{**TINY, "patch_size": patch_size, "stem": "conv"}).eval()
    reference = ConvStem(in_chans=3, depth=len(widths) + 1, channels=(*widths, 32), kernel_size=(3,) * len(widths) + (1,),
                         stride=(2,) * len(widths) + (1,), padding=(1,) * len(widths) + (0,)).eval()
    for module in ours.conv_stem.modules():  # non-trivial BatchNorm statistics and affine terms
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                tensor.data.normal_()
            module.running_var.data.uniform_(0.5, 2.0)
    ours_state = [*ours.conv_stem.state_dict().values(), ours.patch_embed.weight.view(32, 32, 1, 1), ours.patch_embed.bias]
    reference_keys = list(reference.state_dict())
    assert len(reference_keys) == len(ours_state)
    reference.load_state_dict(dict(zip(reference_keys, ours_state)))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = reference(x).flatten(2).transpose(1, 2)
        tokens = ours.patch_embed(ours.conv_stem(x).flatten(2).transpose(1, 2))
    assert [m.out_channels for m in ours.conv_stem if isinstance(m, torch.nn.Conv2d)] == widths
    assert tokens.shape == (2, (16 // patch_size) ** 2, 32)
    torch.testing.assert_close(tokens, expected, rtol=0, atol=1e-5)


def test_conv_stem_needs_a_power_of_two_patch():
    with pytest.raises(ValueError, match="power of 2.*got 6"):
        ViT(img_size=12, patch_size=6, embed_dim=32, depth=1, num_heads=2, stem="conv")


def test_conv_stem_narrower_than_its_convolutions_is_refused_clearly():
    """Widths halve back from embed_dim: 4 convs (patch 16) from width 4 would start with a 0-channel conv."""
    with pytest.raises(ValueError, match="embed_dim=4.*at least 8"):
        ViT(img_size=32, patch_size=16, embed_dim=4, depth=1, num_heads=1, stem="conv")
    ViT(img_size=32, patch_size=16, embed_dim=8, depth=1, num_heads=1, stem="conv")(torch.randn(1, 3, 32, 32))


def test_unknown_stem_lists_the_choices():
    with pytest.raises(ValueError, match="'patch' or 'conv'"):
        ViT(stem="hybrid", **TINY)


@pytest.mark.parametrize("dim,num_heads,mlp_ratio", [(32, 2, 4.0), (48, 3, 2.0)])
def test_block_equals_timm_block(dim, num_heads, mlp_ratio):
    torch.manual_seed(0)
    ours = Block(dim, num_heads, mlp_ratio).eval()
    reference = timm_vit.Block(dim, num_heads, mlp_ratio, qkv_bias=True).eval()
    reference.load_state_dict(ours.state_dict())  # strict: the same names and shapes
    x = torch.randn(2, 10, dim)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


def test_block_orders_are_the_documented_formulas():
    """Each variant equals its docstring formula written with Block's modules."""
    torch.manual_seed(0)
    block = Block(16, 2).eval()
    x = torch.randn(2, 5, 16)
    attn = lambda h: block.attn(h)  # noqa: E731
    mlp = lambda h: block.mlp(h)  # noqa: E731
    ln1, ln2 = block.norm1, block.norm2
    parallel = x + attn(ln1(x)) + mlp(ln2(x))
    h = x + mlp(ln2(x))
    mlp_first = h + attn(ln1(h))
    with torch.no_grad():
        for cls, expected in ((Blockv2, parallel), (Blockv3, mlp_first)):
            variant = cls(16, 2).eval()
            variant.load_state_dict(block.state_dict())
            torch.testing.assert_close(variant(x), expected, rtol=0, atol=1e-6)


def test_patch_embedding_is_a_strided_conv():
    torch.manual_seed(0)
    model = ViT(**TINY)
    x = torch.randn(2, 3, 16, 16)
    weight = model.patch_embed.weight.view(32, 3, 4, 4)
    conv = F.conv2d(x, weight, model.patch_embed.bias, stride=4).flatten(2).transpose(1, 2)
    torch.testing.assert_close(model.patch_embed(patchify(x, 4)), conv, rtol=0, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_attention_manual_and_sdpa_paths_agree(training):
    torch.manual_seed(0)
    sdpa = Attention(32, 4, impl="sdpa").train(training)
    manual = Attention(32, 4, impl="manual").train(training)
    manual.load_state_dict(sdpa.state_dict())
    x = torch.randn(2, 9, 32)
    torch.testing.assert_close(manual(x), sdpa(x), rtol=0, atol=1e-5)


def test_attention_dropout_acts_in_training_only():
    torch.manual_seed(0)
    attn = Attention(16, 2, attn_dropout=0.5, impl="sdpa")
    x = torch.randn(2, 5, 16)
    assert not torch.allclose(attn.train()(x), attn.eval()(x))
    without_dropout = Attention(16, 2, attn_dropout=0.0, impl="manual").eval()
    without_dropout.load_state_dict(attn.state_dict())
    torch.testing.assert_close(attn.eval()(x), without_dropout(x), rtol=0, atol=1e-5)


def test_attention_maps_are_stored_only_when_asked():
    torch.manual_seed(0)
    model = ViT(attn_impl="sdpa", **TINY).eval()
    maps = model.attention_maps(torch.randn(2, 3, 16, 16))
    assert len(maps) == 2
    assert maps[0].shape == (2, 2, 17, 17)  # (batch, heads, 1 + 16 patches, 1 + 16 patches)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 2, 17))
    assert all(not blk.attn.store_attn and blk.attn.last_attn is None for blk in model.blocks)


def test_attention_maps_of_a_model_in_training_mode_are_the_eval_maps_and_change_nothing():
    """No dropout in the maps, no BatchNorm statistics taken from the drawn images, the mode kept."""
    torch.manual_seed(0)
    model = ViT(stem="conv", dropout=0.3, **TINY).train()
    x = torch.randn(2, 3, 16, 16)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    maps = model.attention_maps(x)
    assert model.training
    torch.testing.assert_close(model.state_dict(), state, rtol=0, atol=0)
    expected = model.eval().attention_maps(x)
    assert not model.training
    for got, want in zip(maps, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_variants_share_the_state_dict_but_not_the_function():
    torch.manual_seed(0)
    models = [random_head(ViT(block=block, **TINY)).eval() for block in VARIANTS]
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
    assert shapes[0] == shapes[1] == shapes[2]
    for model in models[1:]:
        model.load_state_dict(models[0].state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        outputs = [m(x) for m in models]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.allclose(outputs[i], outputs[j], atol=1e-3), (VARIANTS[i], VARIANTS[j])


@pytest.mark.parametrize("stem", ["patch", "conv"])
@pytest.mark.parametrize("pool", ["cls", "avg"])
@pytest.mark.parametrize("block", VARIANTS)
def test_every_parameter_gets_a_gradient(block, pool, stem):
    torch.manual_seed(0)
    model = random_head(ViT(block=block, pool=pool, stem=stem, **TINY)).train()
    model(torch.randn(2, 3, 16, 16)).logsumexp(dim=1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pools_and_position_embeddings_keep_the_state_dict_keys():
    shapes = {
        (pool, pos): {k: v.shape for k, v in ViT(pool=pool, pos_embed=pos, **TINY).state_dict().items()}
        for pool in ("cls", "avg")
        for pos in ("learned", "sincos")
    }
    first = next(iter(shapes.values()))
    assert all(s == first for s in shapes.values())


def test_sincos_position_embedding_is_a_fixed_buffer():
    model = ViT(pos_embed="sincos", **TINY)
    assert "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" in dict(model.named_buffers())
    assert not model.pos_embed.requires_grad
    assert model.pos_embed.shape == (1, 17, 32)
    assert torch.all(model.pos_embed[0, 0] == 0)  # class token: no position


@pytest.mark.parametrize("dim,grid", [(32, 4), (64, 8)])
def test_sincos_position_embedding_equals_timms_up_to_the_order_of_channels(dim, grid):
    """timm's table is [sin row, sin col, cos row, cos col], ours [sin row, cos row, sin col, cos col]: the same
    frequencies and positions, so a wrong frequency, axis or row-major order shows."""
    q = dim // 4
    ours = sincos_pos_embed(dim, grid)[1:].view(grid**2, 4, q)
    timm_table = build_sincos2d_pos_embed((grid, grid), dim=dim).view(grid**2, 4, q)
    torch.testing.assert_close(ours, timm_table[:, [0, 2, 1, 3]], rtol=0, atol=1e-6)


def test_initialisation_follows_the_reference_code():
    torch.manual_seed(0)
    model = ViT(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, drop_path=0.3)
    assert torch.all(model.head.weight == 0) and torch.all(model.head.bias == 0)
    assert torch.all(model.cls_token == 0)
    assert 0.015 < model.pos_embed.std() < 0.025
    # lecun normal: variance 1 / fan_in
    fan_in = model.patch_embed.in_features
    assert 0.8 < model.patch_embed.weight.var() * fan_in < 1.2
    # stochastic depth grows linearly over depth, from 0
    assert [blk.drop_path.drop_prob for blk in model.blocks] == pytest.approx([0.0, 0.3])
    assert model.no_weight_decay() == {"pos_embed", "cls_token"}


def test_linear_layers_and_norms_are_initialised_as_in_vit_jax():
    """xavier-uniform kernels (variance 2 / (fan_in + fan_out)), q, k and v each as its own (dim, dim) kernel;
    attention biases 0, MLP biases normal(1e-6); LayerNorm epsilon 1e-6."""
    torch.manual_seed(0)
    dim = 64
    model = ViT(img_size=32, patch_size=4, embed_dim=dim, depth=2, num_heads=2)
    for blk in model.blocks:
        kernels = [*blk.attn.qkv.weight.detach().chunk(3), blk.attn.proj.weight, blk.mlp.fc1.weight, blk.mlp.fc2.weight]
        for w in kernels:
            fan_out, fan_in = w.shape
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert w.abs().max() <= bound
            assert w.var().item() * (fan_in + fan_out) / 2 == pytest.approx(1, abs=0.1)
        assert torch.all(blk.attn.qkv.bias == 0) and torch.all(blk.attn.proj.bias == 0)
        for bias in (blk.mlp.fc1.bias, blk.mlp.fc2.bias):
            assert 0 < bias.abs().max() < 1e-5
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1 and all(m.eps == 1e-6 for m in norms)


def test_attention_learns_through_linear_layers_only():
    attn = Attention(32, 4, attn_dropout=0.1, proj_dropout=0.1)
    learnable = {type(m) for m in attn.modules() if any(True for _ in m.parameters(recurse=False))}
    assert learnable == {torch.nn.Linear}


@pytest.mark.parametrize("pos_embed", ["learned", "sincos"])
def test_no_weight_decay_names_reach_timms_optimizer_groups(pos_embed):
    """The hook's names must be the real parameter names, or timm would silently decay the embeddings."""
    model = ViT(pos_embed=pos_embed, **TINY)
    names = {id(p): n for n, p in model.named_parameters()}
    assert model.no_weight_decay() <= set(names.values()) | {n for n, _ in model.named_buffers()}
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {n for n, p in model.named_parameters() if p.ndim > 1} - {"pos_embed", "cls_token"}


def test_mimetic_init_draws_noisy_identities_for_query_key_and_value_projection():
    torch.manual_seed(0)
    dim, heads = 64, 2
    attn = ViT(img_size=32, patch_size=4, embed_dim=dim, depth=1, num_heads=heads, init="mimetic").blocks[0].attn
    w_q, w_k, w_v = attn.qkv.weight.detach().chunk(3)
    off_diagonal = ~torch.eye(dim, dtype=torch.bool)
    for h in range(heads):
        rows = slice(h * dim // heads, (h + 1) * dim // heads)
        query_key = w_q[rows].T @ w_k[rows]  # what the head's scores x W x^T use
        # rank dim/heads keeps part of 0.7 I, but the diagonal stands well clear of the noise
        assert query_key.diagonal().mean() > 0.4 > 4 * query_key[off_diagonal].std()
    value_proj = w_v.T @ attn.proj.weight.detach().T  # full rank: 0.4 Z - 0.4 I exactly
    assert value_proj.diagonal().mean() == pytest.approx(-0.4, abs=0.05)
    assert value_proj[off_diagonal].std() == pytest.approx(0.4 / dim**0.5, rel=0.1)
    assert torch.all(attn.qkv.bias == 0) and torch.all(attn.proj.bias == 0)


def test_mimetic_init_makes_tokens_attend_to_themselves_and_their_neighbours_from_the_start():
    torch.manual_seed(0)
    config = dict(img_size=32, patch_size=4, embed_dim=64, depth=1, num_heads=2, pos_embed="sincos")
    images = torch.randn(2, 3, 32, 32)
    grid = torch.arange(64).view(8, 8) + 1  # patch tokens follow the class token
    right_neighbour = (grid[:, :-1].flatten(), grid[:, 1:].flatten())
    far_apart = (grid[:4, :4].flatten(), grid[4:, 4:].flatten())

    def attention(init):
        return ViT(init=init, **config).attention_maps(images)[0]

    mimetic, jax = attention("mimetic"), attention("jax")
    uniform = 1 / 65
    assert mimetic.diagonal(dim1=-2, dim2=-1).mean() > 20 * uniform
    assert mimetic[..., right_neighbour[0], right_neighbour[1]].mean() > mimetic[..., far_apart[0], far_apart[1]].mean()
    assert jax.diagonal(dim1=-2, dim2=-1).mean() < 2 * uniform  # the paper's init: nearly uniform
    assert ViT(init="mimetic", **config).state_dict().keys() == ViT(**config).state_dict().keys()


def test_unknown_init_lists_the_choices():
    with pytest.raises(ValueError, match="jax.*mimetic"):
        ViT(init="xavier", **TINY)


def test_timm_reference_of_an_mlp_width_that_is_no_whole_multiple():
    """152 x 8/3 = 405 channels: timm truncates 405/152 x 152 = 404.99... to 404, so the ratio must be handed over
    with room to spare."""
    torch.manual_seed(0)
    ours = ViT(img_size=16, patch_size=4, embed_dim=152, depth=1, num_heads=2, mlp_ratio=8 / 3, num_classes=3)
    assert ours.blocks[0].mlp.fc1.out_features == 405
    reference = timm_vit_from(random_head(ours).eval())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("sizes, phrase", [(dict(img_size=(16, 32)), "img_size=(16, 32)"),
                                           (dict(num_heads=0), "num_heads=0"), (dict(depth=0), "depth=0"),
                                           (dict(in_chans=0), "in_chans=0")])
def test_sizes_that_cannot_work_are_refused_clearly(sizes, phrase):
    with pytest.raises(ValueError, match=re.escape(phrase) + ".*must be a whole number, at least 1"):
        ViT(**{**TINY, **sizes})


def test_img_size_not_divisible_by_patch_size_is_refused_clearly():
    with pytest.raises(ValueError, match=r"img_size 30.*patch_size 8"):
        ViT(img_size=30, patch_size=8)


def test_wrong_input_size_is_refused_clearly():
    with pytest.raises(ValueError, match="16x16"):
        ViT(**TINY)(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("stem", ["patch", "conv"])
@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (3, 16, 16)])
def test_wrong_channels_or_an_unbatched_image_are_refused_clearly(shape, stem):
    """Not a matmul, convolution or unpacking error from deep inside the network."""
    with pytest.raises(ValueError, match=re.escape(f"3-channel 16x16 images (B, 3, 16, 16), got shape {shape}")):
        ViT(stem=stem, **TINY)(torch.randn(*shape))


@pytest.mark.parametrize("name", ["dropout", "attn_dropout", "drop_path"])
@pytest.mark.parametrize("rate", [1.5, -0.1])
def test_rates_outside_0_1_are_refused_naming_their_key(name, rate):
    """nn.Dropout's own message does not say whether dropout or attn_dropout is wrong."""
    with pytest.raises(ValueError, match=rf"^{name}={rate} must lie in \[0, 1\]"):
        ViT(**TINY, **{name: rate})


def test_unknown_block_name_lists_the_choices():
    with pytest.raises(ValueError, match="Block.*Blockv2.*Blockv3"):
        ViT(block="Blockv4", **TINY)


@pytest.mark.parametrize("block", ["Block", "Blockv2", "Blockv3", Blockv2])
def test_block_given_by_name_or_class(block):
    model = ViT(block=block, **TINY)
    expected = block if isinstance(block, type) else {"Block": Block, "Blockv2": Blockv2, "Blockv3": Blockv3}[block]
    assert all(type(blk) is expected for blk in model.blocks)


def test_the_parallel_block_drops_its_two_branches_independently():
    """Blockv2 is x + DropPath(Attn(LN1(x))) + DropPath(MLP(LN2(x))): in training each sample keeps neither, either
    or both branches (scaled by 1 / keep), not both or none together."""
    torch.manual_seed(0)
    block = Blockv2(16, 2, drop_path=0.5)
    x = torch.randn(64, 5, 16)
    with torch.no_grad():
        attn, mlp = block.attn(block.norm1(x)), block.mlp(block.norm2(x))
        delta = block.train()(x) - x
    outcomes = [torch.zeros_like(x), 2 * attn, 2 * mlp, 2 * (attn + mlp)]
    matches = torch.stack([(delta - o).flatten(1).abs().amax(1) < 1e-5 for o in outcomes], 1)  # (samples, outcomes)
    assert torch.all(matches.sum(1) == 1), "every sample keeps some of the two branches, scaled"
    assert torch.all(matches.any(0)), f"all four outcomes in 64 samples, got counts {matches.sum(0).tolist()}"


@pytest.mark.parametrize("dropout,attn_dropout", [(0.5, 0.0), (0.0, 0.5)])
def test_dropout_not_attn_dropout_acts_on_the_embedded_tokens(dropout, attn_dropout):
    """The tokens entering the first block (patches + class token + positions) pass the `dropout` rate, as timm's
    pos_drop; attn_dropout acts on attention probabilities only."""
    torch.manual_seed(0)
    model = ViT(**TINY, dropout=dropout, attn_dropout=attn_dropout)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        model.eval()(x)
        model.train()(x)
    assert torch.equal(seen[0], seen[1]) == (dropout == 0)
