"""vision-exp: ConvNets vs Vision Transformers trained from scratch on ImageNet subsets.

The notebook API (imported lazily, so `import vision_exp` stays light): `vision_exp.run(overrides)`,
`vision_exp.sweep(list_of_overrides)`, `vision_exp.evaluate(ckpt, overrides)` and
`vision_exp.predict(ckpt, images, overrides)`. The last two are the modules of the commands of the same
names, made callable (vision_exp.api.make_module_callable says why).
"""

__all__ = ["run", "sweep", "evaluate", "predict"]


def __getattr__(name):
    if name in ("run", "sweep"):
        from vision_exp import api

        return getattr(api, name)
    if name in ("evaluate", "predict"):
        import importlib

        return importlib.import_module(f"vision_exp.{name}")
    raise AttributeError(f"module 'vision_exp' has no attribute {name!r}")
