"""Block classes chosen by name: a Hydra config writes `block: Blockv2`, Python code may pass the class."""
from __future__ import annotations

from torch import nn


def resolve_block(block: str | type[nn.Module], blocks: tuple[type[nn.Module], ...]) -> type[nn.Module]:
    """`block` itself if it is a class, else the one of `blocks` of that name."""
    if not isinstance(block, str):
        return block
    by_name = {cls.__name__: cls for cls in blocks}
    if block not in by_name:
        raise ValueError(f"unknown block {block!r}; choose one of {sorted(by_name)}")
    return by_name[block]
