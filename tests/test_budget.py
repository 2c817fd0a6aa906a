"""Samples -> steps arithmetic: exact, for several batch sizes, with partial batches."""
import pytest

from vision_exp.errors import ConfigError
from vision_exp.training.budget import Budget


@pytest.mark.parametrize("n, batch, samples, steps, epochs", [
    (100, 10, 300, 30, 3),      # whole epochs of whole batches
    (100, 32, 100, 4, 1),       # 32+32+32+4
    (100, 32, 250, 4 + 4 + 2, 3),  # two epochs, then 50 = 32 + 18
    (100, 64, 64, 1, 1),        # one batch
    (9469, 128, 94690, 10 * 74, 10),
    (9469, 256, 50000, 5 * 37 + 11, 6),  # 5 epochs = 47345, then 2655 = 10 x 256 + 95
])
def test_steps_and_epochs(n, batch, samples, steps, epochs):
    budget = Budget.create(n, batch, None, samples)
    assert budget.total_steps == steps
    assert budget.num_epochs == epochs
    assert sum(budget.samples_in_epoch(e) for e in range(budget.num_epochs)) == samples


def test_samples_per_step_add_up_to_the_budget_exactly():
    budget = Budget.create(9469, 96, None, 33333)
    seen = 0
    for epoch in range(budget.num_epochs):
        left = budget.samples_in_epoch(epoch)
        for step in range(budget.steps_in_epoch(epoch)):
            seen += min(96, left - step * 96)
    assert seen == 33333


def test_epochs_give_whole_passes():
    assert Budget.create(1000, 64, 3, None).train_samples == 3000
    assert Budget.create(1000, 64, 2.5, None).num_epochs == 3


def test_budget_smaller_than_a_batch_is_refused():
    with pytest.raises(ConfigError, match="smaller than one batch"):
        Budget.create(1000, 128, None, 100)


def test_a_batch_larger_than_the_training_set_is_refused():
    """Each step would take the 36 images, not the 64 the config (and its learning rate) says."""
    with pytest.raises(ConfigError, match="data.batch_size=64 is larger than the 36 training images: choose at most 36"):
        Budget.create(36, 64, 2, None)
    assert Budget.create(36, 36, 2, None).total_steps == 2


@pytest.mark.parametrize("n, batch, samples, smallest", [
    (100, 10, 300, 10),   # no partial batch
    (100, 32, 100, 4),    # each epoch ends with 4
    (100, 32, 250, 4),    # 32+32+32+4, twice, then 32+18: the epochs' 4 is the smallest
    (100, 32, 233, 1),    # the third epoch is cut at 33 = 32 + 1
    (9469, 128, 94690, 125),
])
def test_smallest_batch_is_an_epochs_tail_or_the_cut_at_the_budget(n, batch, samples, smallest):
    assert Budget.create(n, batch, None, samples).smallest_batch == smallest


def test_a_batch_smaller_than_the_ranks_is_refused_before_training():
    from vision_exp.training.budget import check_every_rank_gets_samples

    check_every_rank_gets_samples(4, {"training": 4, "validation": 85})
    with pytest.raises(ConfigError, match="last validation batch holds 3 sample.*fewer than the 4 ranks"):
        check_every_rank_gets_samples(4, {"training": 125, "validation": 3})


@pytest.mark.parametrize("world_size, parts, smallest, refused", [
    (2, 2, 4, False), (2, 2, 3, True), (2, 1, 2, False), (4, 3, 12, False), (4, 3, 11, True), (3, 2, 6, False), (3, 2, 5, True),
])
def test_with_sync_bn_a_batch_too_small_for_every_rank_to_run_every_part_is_refused(world_size, parts, smallest, refused):
    """SyncBatchNorm synchronises each part: 3 samples over 2 ranks in 2 parts leave a rank with one part (a hang)."""
    from vision_exp.training.budget import check_every_rank_runs_every_part

    budget = Budget.create(100 + smallest, 100, 2, None)
    assert budget.smallest_batch == smallest
    if refused:
        with pytest.raises(ConfigError, match=rf"holds {smallest} sample\(s\), {smallest // world_size} for some of the "
                                              rf"{world_size} ranks.* {world_size * parts} or more"):
            check_every_rank_runs_every_part(world_size, parts, budget.smallest_batch)
    else:
        check_every_rank_runs_every_part(world_size, parts, budget.smallest_batch)


def test_fractional_epochs_round_to_the_nearest_sample():
    """trainer.epochs=0.29 of 100 images is 29 samples: the float product (28.999...) must not be cut to 28, nor
    0.1 epoch of 9469 images (946.9) to 946."""
    assert Budget.create(100, 10, 0.29, None).train_samples == 29
    assert Budget.create(9469, 128, 0.1, None).train_samples == 947


def test_a_full_epoch_counts_its_partial_batch_as_a_step():
    """The schedule converts epochs (warmup_epochs, step_epochs) to steps with steps_per_full_epoch: 36 images in
    batches of 8 take 5 steps (8, 8, 8, 8, 4), so a warm-up of one epoch lasts 5 steps, not 4."""
    budget = Budget.create(36, 8, 3, None)
    assert budget.steps_per_full_epoch == budget.steps_in_epoch(0) == 5
    assert Budget.create(100, 10, 3, None).steps_per_full_epoch == 10
