"""Every conf/model/*.yaml composes with Hydra, instantiates, runs, and has the pinned size."""

import importlib.util
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("model_summary", ROOT / "scripts" / "model_summary.py")
model_summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_summary)

# Every config in conf/model: a block order added there is summarized and tested like the study's six.
MODEL_CONFIGS = sorted(path.stem for path in (ROOT / "conf" / "model").glob("*.yaml"))
STUDY_CONFIGS = {"resnet_v1", "resnet_v2", "resnet_v3", "vit_v1", "vit_v2", "vit_v3"}


def composed_model(name: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return OmegaConf.to_container(compose(overrides=[f"+model={name}"]).model)


def test_the_summary_covers_every_model_config_and_the_study_has_its_six():
    assert model_summary.MODEL_CONFIGS == MODEL_CONFIGS and STUDY_CONFIGS <= set(MODEL_CONFIGS)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_config_composes_instantiates_and_runs(name):
    torch.manual_seed(0)
    model = model_summary.build_model(name, num_classes=10, img_size=64)
    blocks = model.blocks if hasattr(model, "blocks") else model.layer1
    assert type(blocks[0]).__name__ == composed_model(name)["block"]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_v2_and_v3_configs_differ_from_v1_only_in_the_block(family):
    configs = {name: composed_model(name) for name in MODEL_CONFIGS if name.startswith(f"{family}_")}
    first = configs.pop(f"{family}_v1")
    assert len(configs) >= 2
    for name, config in configs.items():
        assert {k: val for k, val in config.items() if k != "block"} == {k: val for k, val in first.items() if k != "block"}, name
        assert config["block"] != first["block"], name


def test_data_interpolations_reach_the_model():
    model = model_summary.build_model("vit_v1", num_classes=7, img_size=32)
    assert model.head.out_features == 7 and model.img_size == 32


def vit_size(embed_dim, depth, patch_size, img_size, num_classes, mlp_ratio):
    """(parameters, FLOPs per image) of the paper's ViT, counted by hand: a multiply-add is two FLOPs, and
    attention costs two (tokens x tokens x width) products per block."""
    patches, tokens, hidden = (img_size // patch_size) ** 2, (img_size // patch_size) ** 2 + 1, mlp_ratio * embed_dim
    patch_in = 3 * patch_size**2
    block_params = (4 * embed_dim**2 + 4 * embed_dim) + (2 * embed_dim * hidden + hidden + embed_dim) + 4 * embed_dim
    params = (patch_in * embed_dim + embed_dim) + embed_dim + tokens * embed_dim + depth * block_params \
        + 2 * embed_dim + embed_dim * num_classes + num_classes
    block_macs = tokens * (4 * embed_dim**2 + 2 * embed_dim * hidden) + 2 * tokens**2 * embed_dim
    macs = patches * patch_in * embed_dim + depth * block_macs + embed_dim * num_classes
    return params, 2 * macs


def test_summary_counts_agree_with_counts_made_another_way():
    """The ResNets against torchvision's ResNet of the same layout, the ViTs against the count by hand; the
    block variants reorder operations, so their sizes are v1's."""
    from vision_exp.models.references import torchvision_resnet_from

    rows = {row["config"]: row for row in model_summary.summarize(num_classes=10, img_size=64)}
    reference = torchvision_resnet_from(model_summary.build_model("resnet_v1", num_classes=10, img_size=64)).eval()
    resnet = (sum(p.numel() for p in reference.parameters()), model_summary.flops_per_image(reference, 64))
    vit_cfg = OmegaConf.load(ROOT / "conf" / "model" / "vit_v1.yaml")
    vit = vit_size(vit_cfg.embed_dim, vit_cfg.depth, vit_cfg.patch_size, 64, 10, vit_cfg.mlp_ratio)
    for name, row in rows.items():
        assert (row["params"], row["flops"]) == (resnet if name.startswith("resnet") else vit), name
