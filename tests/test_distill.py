"""Knowledge distillation (loss.distillation): the loss it computes, the inputs its teacher sees, the
teacher it refuses."""
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_CLASSES, compose, tiny_overrides, tiny_vit_overrides, write_image_folder
from vision_exp.errors import CheckpointError, ConfigError
from vision_exp.experiment import run_experiment
from vision_exp.recipe.config import DistillConfig
from vision_exp.recipe.distill import Distillation
from vision_exp.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory):
    """A tiny ResNet trained for one epoch on the tiny folder: a run's best.pt, as a user would pass it."""
    root = tmp_path_factory.mktemp("teacher")
    folder = write_image_folder(root / "data")
    run = root / "teacher_run"
    run_experiment(compose(tiny_overrides(folder)), run, [])
    return folder, run / "checkpoints" / "best.pt"


def distilled(folder, checkpoint, *extra):
    return compose(tiny_vit_overrides(folder, "experiment=cpu_vit_distilled", f"loss.distillation.teacher={checkpoint}",
                                      *extra))


def test_hard_distillation_adds_the_teacher_top_class_as_a_second_label():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    teacher = torch.tensor([[0.0, 0.0, 3.0], [0.0, 4.0, 0.0]])
    label_loss = torch.tensor(1.25)
    loss = Distillation(torch.nn.Identity(), "hard", weight=0.3)(label_loss, student, teacher)
    expected = 0.7 * 1.25 + 0.3 * F.cross_entropy(student, torch.tensor([2, 1]))
    torch.testing.assert_close(loss, expected)


def test_soft_distillation_is_the_tempered_kl_divergence_and_vanishes_when_student_agrees():
    """KL(teacher || student): the teacher's distribution is the target. The logits must not make two distributions
    that are each other reversed (as [0, 1, 3] and [2, 0, -1] do at T=2): for those both directions give one number."""
    student, teacher = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 4.0]])
    soft = Distillation(torch.nn.Identity(), "soft", weight=1.0, temperature=2.0)
    p_teacher = torch.softmax(teacher / 2, 1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / 2, 1))).sum() * 4
    torch.testing.assert_close(soft(torch.tensor(0.0), student, teacher), kl)
    torch.testing.assert_close(soft(torch.tensor(0.0), teacher, teacher), torch.tensor(0.0))


@pytest.mark.parametrize("values, phrase", [
    ({"kind": "dark"}, "kind='dark' must be one of none, hard, soft"),
    ({"weight": 1.5}, r"weight=1.5 must lie in \[0, 1\]"),
    ({"temperature": 0}, "temperature=0 must be positive"),
])
def test_bad_distillation_settings(values, phrase):
    with pytest.raises(ConfigError, match=phrase):
        DistillConfig(**values)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_a_distillation_weight_at_either_end_of_its_range_leaves_one_term(weight):
    """loss.distillation.weight lies in [0, 1], both ends included: 1 learns from the teacher alone, 0 from the
    labels alone (a control run that pays for the teacher)."""
    student, teacher = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 0.0, 3.0]])
    label_loss = torch.tensor(1.25)
    config = DistillConfig(kind="hard", weight=weight)
    loss = Distillation(torch.nn.Identity(), config.kind, weight=config.weight)(label_loss, student, teacher)
    teacher_loss = F.cross_entropy(student, teacher.argmax(1))
    torch.testing.assert_close(loss, teacher_loss if weight == 1 else label_loss)


def test_the_teacher_sees_the_students_mixed_inputs_stays_frozen_and_shapes_the_loss(teacher_checkpoint, tmp_path,
                                                                                     monkeypatch):
    """With mixup on: the teacher predicts on exactly the images the student trains on, in eval mode, and
    the loss is the labels' (soft-target) loss mixed with the teacher's top class; the teacher's file is untouched."""
    from vision_exp.training.trainer import Trainer

    folder, checkpoint = teacher_checkpoint
    seen, fit = [], Trainer.fit

    def watching_fit(self):
        forward, teacher_logits, combine = self.forward, self.distillation.teacher_logits, self.distillation.forward
        step = {}

        def recording_forward(images):
            if self.model.training:
                step["student_input"] = images.clone()
            return forward(images)

        def recording_teacher(images):
            step["teacher_input"], step["teacher_training"] = images.clone(), self.distillation.teacher.training
            step["teacher_logits"] = teacher_logits(images)
            return step["teacher_logits"]

        def recording_combine(label_loss, student_logits, teacher_out):
            value = combine(label_loss, student_logits, teacher_out)
            seen.append({**step, "label_loss": label_loss.detach(), "student_logits": student_logits.detach(),
                         "value": value.detach()})
            return value

        self.forward, self.distillation.teacher_logits, self.distillation.forward = (
            recording_forward, recording_teacher, recording_combine)
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", watching_fit)
    before = load_checkpoint(checkpoint)["model"]
    summary = run_experiment(distilled(folder, checkpoint, "augmentation=mixup_cutmix", "loss.distillation.kind=hard"),
                             tmp_path / "run", [])
    assert summary["status"] == "completed" and len(seen) == 3  # 20 samples in batches of 8
    for record in seen:
        assert torch.equal(record["teacher_input"], record["student_input"])
        assert record["teacher_training"] is False
        expected = 0.5 * record["label_loss"] + 0.5 * F.cross_entropy(record["student_logits"],
                                                                       record["teacher_logits"].argmax(1))
        torch.testing.assert_close(record["value"], expected)
    after = load_checkpoint(checkpoint)["model"]
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_distillation_changes_what_the_student_learns(teacher_checkpoint, tmp_path):
    folder, checkpoint = teacher_checkpoint
    plain = run_experiment(compose(tiny_vit_overrides(folder, "experiment=cpu_vit_enhanced")), tmp_path / "plain", [])
    taught = run_experiment(distilled(folder, checkpoint), tmp_path / "taught", [])
    assert taught["status"] == plain["status"] == "completed"
    assert taught["val_loss"] != pytest.approx(plain["val_loss"], rel=1e-6)  # same seed, same batches: only the loss differs


def test_a_distillation_kind_without_a_teacher_is_refused_before_anything_is_written(tiny_folder, tmp_path):
    cfg = compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit_distilled"))
    with pytest.raises(ConfigError, match="loss.distillation.kind=soft needs a teacher"):
        run_experiment(cfg, tmp_path / "run", [])
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_teacher_checkpoint_that_does_not_exist_is_refused(tiny_folder, tmp_path):
    with pytest.raises(CheckpointError, match="loss.distillation.teacher: checkpoint not found: .*no_such.pt"):
        run_experiment(distilled(tiny_folder, tmp_path / "no_such.pt"), tmp_path / "run", [])


def test_a_missing_teacher_stops_a_sweep_before_its_first_job(tiny_folder, tmp_path):
    """Every job of the sweep would read its data and then fail on the same teacher."""
    from vision_exp.experiment import check_buildable

    with pytest.raises(CheckpointError, match="loss.distillation.teacher: checkpoint not found: .*no_such.pt"):
        check_buildable(distilled(tiny_folder, tmp_path / "no_such.pt"))
    with pytest.raises(ConfigError, match="loss.distillation.kind=soft needs a teacher"):
        check_buildable(compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit_distilled")))


@pytest.mark.parametrize("config_text", ["model: [unclosed", "data: {}\n", "model:\n  _target_: vision_exp.models.NoSuchNet\n"])
def test_a_teacher_whose_run_config_cannot_build_its_model_is_one_message(teacher_checkpoint, tmp_path, config_text):
    """The teacher's run folder, not this command, is at fault: a CheckpointError naming its config.yaml (one
    line and status 2 on the command line), not a traceback from YAML or Hydra."""
    import shutil

    folder, checkpoint = teacher_checkpoint
    run = tmp_path / "teacher_run"
    shutil.copytree(checkpoint.parent.parent, run)
    (run / "config.yaml").write_text(config_text)
    with pytest.raises(CheckpointError, match=rf"the model of .*best.pt cannot be built from its run's {run}/config.yaml"):
        run_experiment(distilled(folder, run / "checkpoints" / "best.pt"), tmp_path / "student", [])


def test_a_student_resumed_after_its_teacher_changed_is_refused(teacher_checkpoint, tmp_path, monkeypatch):
    """Results credited to one teacher must not be partly taught by another: the teacher run went on and
    rewrote best.pt. With the file it began with, the student resumes."""
    import shutil

    from conftest import sigterm_at_step
    from vision_exp.training.checkpoint import save_checkpoint
    from vision_exp.training.trainer import Interrupted

    folder, checkpoint = teacher_checkpoint
    teacher = tmp_path / "teacher_run" / "checkpoints" / "best.pt"
    shutil.copytree(checkpoint.parent.parent, teacher.parent.parent)
    student = tmp_path / "student"
    with sigterm_at_step(monkeypatch, 1), pytest.raises(Interrupted):
        run_experiment(distilled(folder, teacher), student, [])
    kept = {path: path.read_bytes() for path in teacher.parent.glob("best.pt*")}  # with its SHA-256 sidecar
    state = load_checkpoint(teacher)
    state["model"] = {key: value + 1 if value.is_floating_point() else value for key, value in state["model"].items()}
    save_checkpoint(state, teacher)
    with pytest.raises(ConfigError, match="the teacher's checkpoint has changed since this run began"):
        run_experiment(distilled(folder, teacher, "trainer.resume=auto"), student, [])
    for path, content in kept.items():
        path.write_bytes(content)
    assert run_experiment(distilled(folder, teacher, "trainer.resume=auto"), student, [])["status"] == "completed"


def test_a_teacher_of_other_classes_is_refused(teacher_checkpoint, tmp_path):
    _, checkpoint = teacher_checkpoint
    other = write_image_folder(tmp_path / "other", classes=TINY_CLASSES[:2])
    with pytest.raises(ConfigError, match="trained on 3 classes .* this run has 2"):
        run_experiment(distilled(other, checkpoint), tmp_path / "run", [])


def test_a_teacher_that_saw_other_inputs_is_refused(teacher_checkpoint, tmp_path):
    folder, checkpoint = teacher_checkpoint
    with pytest.raises(ConfigError, match="trained with data.img_size=16, this run has 24"):
        run_experiment(distilled(folder, checkpoint, "data.img_size=24"), tmp_path / "run", [])


@pytest.mark.parametrize("scale", ["e2", "cpu"])
def test_a_distilled_preset_is_its_enhanced_preset_taught(scale):
    """The comparison with `<scale>_vit_enhanced` measures the teacher and nothing else."""
    from omegaconf import OmegaConf

    from vision_exp.reporting.records import flatten

    enhanced = flatten(OmegaConf.to_container(compose([f"experiment={scale}_vit_enhanced"])))
    distilled = flatten(OmegaConf.to_container(compose([f"experiment={scale}_vit_distilled"])))
    changed = {key: value for key, value in distilled.items() if enhanced.get(key) != value}
    assert changed == {"name": f"{scale}_vit_distilled", "loss.distillation.kind": "soft"}


def test_soft_distillation_averages_over_the_images_of_a_batch():
    """batchmean: a batch's teacher term is the mean of its images' terms, so the teacher's share of the loss does
    not grow with data.batch_size (a sum would make weight=0.5 mean more teacher for larger batches)."""
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0, 3.0], [1.0, -1.0, 2.0]])
    soft = Distillation(torch.nn.Identity(), "soft", weight=1.0, temperature=2.0)
    zero = torch.tensor(0.0)
    per_image = torch.stack([soft(zero, student[i:i + 1], teacher[i:i + 1]) for i in range(2)])
    assert (per_image > 0).all()
    torch.testing.assert_close(soft(zero, student, teacher), per_image.mean())


def test_a_missing_teacher_is_refused_before_the_data_is_read(tiny_folder, tmp_path):
    """A typo in the teacher's path is one line at once, not after the data is indexed and checked (28 s on the
    GPU machine before the first student of a lease said so): here the data's class count would refuse it first."""
    cfg = distilled(tiny_folder, tmp_path / "no_such.pt")
    cfg.model.num_classes = 7  # the tiny folder has 3: refused once the data is read
    with pytest.raises(CheckpointError, match="loss.distillation.teacher: checkpoint not found: .*no_such.pt"):
        run_experiment(cfg, tmp_path / "run", [])
