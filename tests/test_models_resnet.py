"""Our ResNet equals torchvision's; the three block orders share weights but not the function."""

import pytest
import torch
import torchvision
from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock

from vision_exp.models import BasicBlock, BasicBlockv2, BasicBlockv3, ResNet
from vision_exp.models.references import torchvision_resnet_from
from vision_exp.models.resnet import BLOCKS

VARIANTS = list(BLOCKS)  # a block order added there gets every test of the family
ZERO_INIT_BLOCKS = [block for block in BLOCKS if not block.zero_init_refusal]
TINY = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem="small", stem_stride=2, num_classes=5)


def randomize_batchnorms(model: torch.nn.Module) -> None:
    """Non-trivial BN affine parameters and running statistics, so eval mode tests something."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(std=0.2)
            m.running_mean.normal_(std=0.2)
            m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("in_channels,out_channels,stride", [(8, 8, 1), (8, 16, 2), (8, 16, 1)])
def test_basic_block_equals_torchvision(in_channels, out_channels, stride, mode):
    torch.manual_seed(0)
    ours = BasicBlock(in_channels, out_channels, stride)
    randomize_batchnorms(ours)
    downsample = None
    if ours.downsample is not None:
        downsample = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), torch.nn.BatchNorm2d(out_channels)
        )
    reference = TorchvisionBasicBlock(in_channels, out_channels, stride, downsample)
    assert ours.state_dict().keys() == reference.state_dict().keys()
    reference.load_state_dict(ours.state_dict())
    ours.train(mode == "train")
    reference.train(mode == "train")

    x = torch.randn(4, in_channels, 12, 12)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-6)
    # In train mode the forward also updated the BN running statistics: they must agree too.
    torch.testing.assert_close(ours.state_dict(), reference.state_dict(), rtol=0, atol=1e-6)


def test_resnet_loads_torchvision_resnet18_with_identical_logits():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=7).eval()
    ours = ResNet(stem="imagenet", layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes=7).eval()
    ours.load_state_dict(reference.state_dict())  # strict: same keys and shapes
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torchvision_reference_network_equals_ours(mode, memory_format):
    """The network scripts/benchmark.py compares against computes our function."""
    torch.manual_seed(0)
    ours = ResNet(**TINY).to(memory_format=memory_format).train(mode == "train")
    randomize_batchnorms(ours)
    reference = torchvision_resnet_from(ours).to(memory_format=memory_format)  # in ours's mode
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=memory_format)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


def test_torchvision_reference_refuses_reordered_blocks():
    with pytest.raises(ValueError, match="v1"):
        torchvision_resnet_from(ResNet(block="BasicBlockv2", **TINY))


def test_channels_last_computes_the_same_logits():
    torch.manual_seed(0)
    model = ResNet(**TINY).eval()
    randomize_batchnorms(model)
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layers", [(1, 1, 1, 1), (2, 2, 1, 1)])
def test_variants_share_the_state_dict_but_not_the_function(layers):
    torch.manual_seed(0)
    models = [ResNet(block=block, **{**TINY, "layers": layers}) for block in VARIANTS]
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
    assert shapes[0] == shapes[1] == shapes[2]

    randomize_batchnorms(models[0])
    for model in models[1:]:
        model.load_state_dict(models[0].state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outputs = [m.eval()(x) for m in models]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.allclose(outputs[i], outputs[j], atol=1e-3), (VARIANTS[i], VARIANTS[j])


@pytest.mark.parametrize("downsample", [False, True])
def test_block_orders_are_the_documented_formulas(downsample):
    """Each variant equals its docstring formula written with BasicBlock's modules."""
    torch.manual_seed(0)
    block = BasicBlock(8, 16 if downsample else 8, 2 if downsample else 1)
    randomize_batchnorms(block)
    block.eval()
    relu = torch.relu
    x = torch.randn(2, 8, 8, 8)
    s = block.downsample if downsample else (lambda h: h)
    bn1, bn2, conv1, conv2 = block.bn1, block.bn2, block.conv1, block.conv2
    pre_activation = s(x) + bn2(conv2(relu(bn1(conv1(relu(x))))))
    relu_before_addition = s(x) + relu(bn2(conv2(relu(bn1(conv1(x))))))
    with torch.no_grad():
        for cls, expected in ((BasicBlockv2, pre_activation), (BasicBlockv3, relu_before_addition)):
            variant = cls(*block_shape(block))
            variant.load_state_dict(block.state_dict())
            torch.testing.assert_close(variant.eval()(x), expected, rtol=0, atol=1e-6)


def block_shape(block: BasicBlock) -> tuple[int, int, int]:
    return block.conv1.in_channels, block.conv1.out_channels, block.conv1.stride[0]


@pytest.mark.parametrize("block", VARIANTS)
def test_every_parameter_gets_a_gradient(block):
    torch.manual_seed(0)
    model = ResNet(block=block, **TINY).train()
    model(torch.randn(4, 3, 32, 32)).logsumexp(dim=1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("block", ["BasicBlock", "BasicBlockv2", "BasicBlockv3"])
def test_block_given_by_name(block):
    model = ResNet(block=block, **TINY)
    assert type(model.layer1[0]).__name__ == block


def test_unknown_block_name_lists_the_choices():
    with pytest.raises(ValueError, match="BasicBlock.*BasicBlockv2.*BasicBlockv3"):
        ResNet(block="Bottleneck")


def test_a_stem_stride_with_the_fixed_imagenet_stem_is_refused():
    with pytest.raises(ValueError, match="stem_stride=2 applies to stem='small' only"):
        ResNet(**{**TINY, "stem": "imagenet"})  # TINY has stem_stride=2


@pytest.mark.parametrize("layout,phrase", [(dict(layers=(1, 1, 1)), "4 stages"), (dict(widths=(8, 0, 8, 8)), "at least 1"),
                                           (dict(layers=(1, 0, 1, 1)), "at least 1"), (dict(stem_stride=0), "at least 1")])
def test_layouts_that_cannot_work_are_refused_clearly(layout, phrase):
    with pytest.raises(ValueError, match=phrase):
        ResNet(**{**TINY, **layout})


def test_unknown_stem_raises():
    with pytest.raises(ValueError, match="stem"):
        ResNet(stem="patchify")


@pytest.mark.parametrize("stem,stem_stride,feature_size", [("small", 1, 4), ("small", 2, 2), ("imagenet", 1, 1)])
def test_stems_downsample_as_documented(stem, stem_stride, feature_size):
    model = ResNet(stem=stem, stem_stride=stem_stride, layers=(1, 1, 1, 1), widths=(8, 8, 8, 8)).eval()
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == feature_size


@pytest.mark.parametrize("stem", ["small", "imagenet"])
def test_initialisation_follows_torchvision(stem):
    """He-normal convs (variance 2 / fan_out, fan_out = out_channels x kernel area), BatchNorms the identity map."""
    torch.manual_seed(0)
    model = ResNet(stem=stem, stem_stride=1, layers=(2, 1, 1, 1), widths=(32, 64, 64, 128))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 5 + 3  # stem, two per block, three projections
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.var().item() * fan_out / 2 == pytest.approx(1, abs=0.15), conv
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


@pytest.mark.parametrize("block", ZERO_INIT_BLOCKS)
def test_zero_init_residual_makes_identity_blocks_start_as_the_identity(block):
    model = ResNet(block=block, zero_init_residual=True, **TINY).eval()
    identity_block = model.layer1[0]  # 8 -> 8 channels, stride 1
    x = torch.randn(2, 8, 8, 8).relu()  # a ReLU output, as after the stem
    with torch.no_grad():
        torch.testing.assert_close(identity_block(x), x)


@pytest.mark.parametrize("block", ZERO_INIT_BLOCKS)
def test_zero_init_residual_branches_still_train(block):
    """Each zeroed bn2 must still receive a gradient, or its branch stays zero for the whole run."""
    torch.manual_seed(0)
    model = ResNet(block=block, zero_init_residual=True, **TINY).train()
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        if name.endswith("bn2.weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_zero_init_residual_with_relu_before_addition_is_refused():
    """BasicBlockv3's branch ends in ReLU: zeroed, it is ReLU(0), whose gradient is 0, so it would never train."""
    with pytest.raises(ValueError, match="zero_init_residual.*BasicBlockv3"):
        ResNet(block="BasicBlockv3", zero_init_residual=True, **TINY)
    assert ZERO_INIT_BLOCKS == [BasicBlock, BasicBlockv2]


def test_a_block_that_declares_a_zero_init_refusal_is_refused_with_its_reason():
    """A block order added later (here BN after the addition: a zeroed bn2 would not make it its shortcut) says why
    in one attribute, and ResNet refuses the setting with that reason; without the setting it builds."""
    class PostAdditionBatchNorm(BasicBlock):
        zero_init_refusal = "its BatchNorm comes after the addition"

        def forward(self, x):
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))) + self.shortcut(x)))

    with pytest.raises(ValueError, match="cannot train PostAdditionBatchNorm: its BatchNorm comes after the addition"):
        ResNet(block=PostAdditionBatchNorm, zero_init_residual=True, **TINY)
    assert ResNet(block=PostAdditionBatchNorm, **TINY)(torch.randn(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize("block", [BasicBlockv2, BasicBlockv3])
def test_the_last_blocks_unrectified_output_goes_through_a_relu_before_pooling(block):
    """v2 and v3 blocks end in an addition that can be negative: the network's documented extra ReLU sits between
    the last block and the average pool, for every block type."""
    torch.manual_seed(0)
    model = ResNet(block=block, **TINY).eval()
    randomize_batchnorms(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = model.maxpool(torch.relu(model.bn1(model.conv1(x))))
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
            h = stage(h)
        assert (h < 0).any(), "the test needs negative block outputs"
        expected = model.fc(torch.relu(h).mean(dim=(2, 3)))
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)
