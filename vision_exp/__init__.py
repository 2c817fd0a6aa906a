"""vision-exp: ConvNets vs Vision Transformers trained from scratch on ImageNet subsets.

`vision_exp.run(overrides)` and `vision_exp.sweep(list_of_overrides)` are the notebook API
(imported lazily, so `import vision_exp` stays light).
"""

__all__ = ["run", "sweep"]


def __getattr__(name):
    if name in __all__:
        from vision_exp import api

        return getattr(api, name)
    raise AttributeError(f"module 'vision_exp' has no attribute {name!r}")
