"""The training recipe: optimizer, learning-rate schedule, loss and augmentation choices.

Thin wrappers over timm's well-kept factories, shaped so that Hydra configs can name them as
`_target_`s with `_partial_: true` and the trainer binds them to the model and the budget.
"""
