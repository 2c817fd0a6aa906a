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

# Computed once with scripts/model_summary.py (10 classes, 64 px); a change here is a change of model.
PARAMETERS = {
    "resnet_v1": 1_228_970,
    "resnet_v2": 1_228_970,
    "resnet_v3": 1_228_970,
    "vit_v1": 2_721_226,
    "vit_v2": 2_721_226,
    "vit_v3": 2_721_226,
}
# Includes the ViT's attention matmuls (SDPA is counted on the manual path).
FLOPS = {
    "resnet_v1": 127_603_712,
    "resnet_v2": 127_603_712,
    "resnet_v3": 127_603_712,
    "vit_v1": 369_238_272,
    "vit_v2": 369_238_272,
    "vit_v3": 369_238_272,
}
BLOCKS = {
    "resnet_v1": "BasicBlock",
    "resnet_v2": "BasicBlockv2",
    "resnet_v3": "BasicBlockv3",
    "vit_v1": "Block",
    "vit_v2": "Blockv2",
    "vit_v3": "Blockv3",
}


def test_there_are_six_model_configs():
    assert model_summary.MODEL_CONFIGS == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_config_composes_instantiates_and_runs(name):
    torch.manual_seed(0)
    model = model_summary.build_model(name, num_classes=10, img_size=64)
    blocks = model.blocks if hasattr(model, "blocks") else model.layer1
    assert type(blocks[0]).__name__ == BLOCKS[name]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_v2_and_v3_configs_differ_from_v1_only_in_the_block(family):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        configs = {
            v: OmegaConf.to_container(compose(overrides=[f"+model={family}_{v}"]).model)
            for v in ("v1", "v2", "v3")
        }
    for v in ("v2", "v3"):
        assert {k: val for k, val in configs[v].items() if k != "block"} == {
            k: val for k, val in configs["v1"].items() if k != "block"
        }
        assert configs[v]["block"] != configs["v1"]["block"]


def test_data_interpolations_reach_the_model():
    model = model_summary.build_model("vit_v1", num_classes=7, img_size=32)
    assert model.head.out_features == 7 and model.img_size == 32


def test_summary_pins_parameter_and_flop_counts():
    rows = {row["config"]: row for row in model_summary.summarize(num_classes=10, img_size=64)}
    assert {name: row["params"] for name, row in rows.items()} == PARAMETERS
    assert {name: row["flops"] for name, row in rows.items()} == FLOPS
