"""The training recipe: optimizer, learning-rate schedule, loss, distillation and augmentation choices.

The optimizer and the schedule are thin wrappers over timm's well-kept factories, shaped so that Hydra
configs can name them as `_target_`s with `_partial_: true` and the trainer binds them to the model and
the budget. Loss, distillation and augmentation are built from their settings by `vision_exp.experiment`
and the data loaders, and handed to the trainer as plain objects.
"""
