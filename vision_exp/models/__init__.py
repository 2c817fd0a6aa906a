"""Model families of the study: ResNets and ViTs, each with three block orders."""

from .resnet import BasicBlock, BasicBlockv2, BasicBlockv3, ResNet
from .vit import MLP, Attention, Block, Blockv2, Blockv3, ViT

__all__ = [
    "MLP",
    "Attention",
    "BasicBlock",
    "BasicBlockv2",
    "BasicBlockv3",
    "Block",
    "Blockv2",
    "Blockv3",
    "ResNet",
    "ViT",
]
