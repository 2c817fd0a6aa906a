"""Build the uint8 data cache ahead of time: `python scripts/prepare_data.py [overrides]`.

Takes the same overrides as training (e.g. `data.img_size=32 data.num_classes=5`), decodes the
selected train and val images on all cores with a progress bar, and prints where the cache
lies. Copy that folder (or point VISION_EXP_CACHE at it) to move a prepared subset to another
machine: a run with the same data settings finds it and skips decoding.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from hydra.errors import HydraException

from vision_exp.api import compose_config
from vision_exp.cli import ignore_further_ctrl_c
from vision_exp.data.loaders import cached_index_split, index_dataset
from vision_exp.errors import UserError
from vision_exp.settings import run_settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m vision_exp.train")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes (default: all cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = compose_config(args.overrides)
    except HydraException as exc:  # a misspelt option or key, as python -m vision_exp.train reports it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        data = run_settings(cfg).data  # every value a run would refuse, refused here too
        if data.loader != "cached":
            print(f"data.loader={data.loader} decodes the image files at every access: it reads no cache, so there "
                  f"is none to prepare (data.loader=cached, the default, does)", file=sys.stderr)
            return 2
        index = index_dataset(data)
        for split_name in ("train", "val"):
            cached = cached_index_split(index, data, split_name, max(1, args.workers))
            print(f"{split_name}: {len(cached.images)} images of {data.resize_size}x{data.resize_size} "
                  f"({cached.images.nbytes / 2**20:.0f} MiB) in {data.cache_entry(split_name)}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while decoding (the cache keeps no half-written folder): one line, as a run says it
        ignore_further_ctrl_c()
        print("stopped by Ctrl-C", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
