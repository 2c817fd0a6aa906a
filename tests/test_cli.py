"""`python -m vision_exp.train` as a user runs it: bad input ends in one clear message and a
non-zero exit before training starts, and an earlier run's folder is left as it was."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_CLASSES, run_cli, tiny_overrides, write_image_folder


def assert_clean_failure(result, *phrases, code=2):
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    for phrase in phrases:
        assert phrase in output, f"{phrase!r} not in:\n{output}"


def test_missing_dataset_names_the_path_and_both_fixes(tmp_path):
    result = run_cli([f"hydra.run.dir={tmp_path / 'run'}"], env_extra={"VISION_EXP_DATA": str(tmp_path / "nowhere")})
    assert_clean_failure(result, f"{tmp_path / 'nowhere'}/imagenette2-160", "VISION_EXP_DATA", "data.download=true")
    assert not (tmp_path / "run").exists()  # a refused command is not a run: the folder made for it is gone


def test_a_refused_command_removes_the_folders_made_for_it_and_keeps_those_that_were_there(tiny_folder, tmp_path):
    """The default run folder is outputs/<name>/<date>_<time>: a mistyped value must not leave one behind, nor
    its new parents; a folder the user made (or pointed hydra.run.dir at) stays, its refusal recorded."""
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "notes.txt").write_text("mine")
    refused = run_cli(tiny_overrides(tiny_folder, "data.batch_size=0", "name=typo"),
                      env_extra={"VISION_EXP_OUTPUT": str(tmp_path / "outputs")})
    assert_clean_failure(refused, "data.batch_size=0 must be positive")
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["notes.txt"]
    no_data = run_cli(tiny_overrides(tmp_path / "nowhere", f"hydra.run.dir={tmp_path / 'new' / 'deep'}"))
    assert_clean_failure(no_data, "dataset folder not found")
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.log").write_text("an earlier run's log\n")
    again = run_cli(tiny_overrides(tiny_folder, "data.batch_size=0", f"hydra.run.dir={tmp_path / 'new' / '..' / 'mine'}"))
    assert_clean_failure(again, "data.batch_size=0 must be positive")
    assert json.loads((mine / "metrics.json").read_text())["status"] == "failed"
    assert "an earlier run's log" in (mine / "train.log").read_text(), "new/../mine is mine, there before"


def test_empty_dataset_folder(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    result = run_cli(tiny_overrides(tmp_path / "empty", f"hydra.run.dir={tmp_path / 'run'}"))
    assert_clean_failure(result, "no class folders")


def test_class_folder_without_images(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    shutil.rmtree(root / "val" / TINY_CLASSES[0])
    (root / "val" / TINY_CLASSES[0]).mkdir()
    result = run_cli(tiny_overrides(root, f"hydra.run.dir={tmp_path / 'run'}"))
    assert_clean_failure(result, "class folder without images", TINY_CLASSES[0])


@pytest.mark.parametrize("override, phrase", [
    ("data.batch_size=0", "data.batch_size=0 must be positive"),
    ("optimizer.lr=0", "optimizer.lr=0 must be positive"),
    ("optimizer.lr=-0.1", "optimizer.lr=-0.1 must be positive"),
    ("data.img_size=8", "data.img_size=8 is too small"),
    ("data.batch_size=abc", "data.batch_size='abc' must be an integer"),  # the key named, not a failed comparison
    ("optimizer.lr=fast", "optimizer.lr='fast' must be a finite number"),
    ("scheduler.warmup_fraction=abc", "scheduler.warmup_fraction='abc' must be a finite number or null"),
    ("+trainer.epoch=3", "trainer.epoch is not a setting (did you mean trainer.epochs?)"),
    ("model.layers=[1,0,1,1]", "must be at least 1"),
    ("trainer.grad_accum_steps=0", "trainer.grad_accum_steps=0 must be a whole number, at least 1"),
    ("trainer.grad_accum_steps=9", "into that many parts: at most 8"),
    ("optimizer.momentum=1", "optimizer.momentum=1 must lie in [0, 1)"),
    ("scheduler.lr_min=-1", "scheduler.lr_min=-1 must not be negative"),
])
def test_invalid_values_stop_before_training(tiny_folder, tmp_path, override, phrase):
    """Before the images are read, too: decoding a large dataset into the cache can take hours."""
    result = run_cli(tiny_overrides(tiny_folder, override, f"hydra.run.dir={tmp_path / 'run'}",
                                    f"data.cache_dir={tmp_path / 'cache'}"))
    assert_clean_failure(result, phrase)
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "cache").exists()


# `python -m MODULE ARGS` that says at its exit whether torch was imported.
REPORTING_TORCH = """
import atexit, os, runpy, sys
module = sys.argv.pop(1)
atexit.register(lambda: os.write(2, f"torch imported: {'torch' in sys.modules}\\n".encode()))
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("module, args, phrase, code", [
    ("train", ["--cfg", "job"], "batch_size:", 0),
    ("train", ["--help"], "vx-train -m experiment=ablation_vit_blocks", 0),
    # a key the config lacks, set without +: Hydra's own advice (+trainer.epochz=3) leads to a refused run
    ("train", ["trainer.epochz=3"], "error: trainer.epochz is not a setting (did you mean trainer.epochs?)", 2),
    ("train", ["lr=0.1"], "error: lr is not a setting (did you mean optimizer.lr?)", 2),
    # a misspelt section: the setting under the nearest one, its own misspelling mended, or else the section
    ("train", ["trainr.epochz=3"], "error: trainr.epochz is not a setting (did you mean trainer.epochs?)", 2),
    ("train", ["trainr.nonsense=3"], "error: trainr is not a setting (did you mean trainer?)\n", 2),
    ("train", ["model=vit_v1", "model.patch_sise=4"], "model.patch_sise is not a setting (did you mean model.patch_size?)", 2),
    ("train", ["-m", "trainer.epoch=3", "seed=0,1"], "trainer.epoch is not a setting (did you mean trainer.epochs?)", 2),
    ("train", ["hydra.run.dirr=x"], "hydra.run.dirr is not a setting (did you mean hydra.run.dir?)", 2),
    ("evaluate", ["ckpt={tmp}/missing.pt", "trainer.epochs=3"], "error: trainer is not a setting\n", 2),
    ("evaluate", ["ckpt={tmp}/missing.pt", "trainer.device=cpu"], "error: trainer.device is not a setting (did you mean device?)", 2),
    ("evaluate", ["ckpt={tmp}/missing.pt", "trainer.dvice=cpu"], "error: trainer.dvice is not a setting (did you mean device?)", 2),
    ("train", ["model=vit_v9"], "error: model=vit_v9 is not an option (did you mean vit_v1, vit_v2 or vit_v3?): model is one of "
                                "resnet_v1, resnet_v2, resnet_v3, vit_v1, vit_v2, vit_v3\n", 2),  # one line, not Hydra's dozen
    ("train", ["experiment=e2vit"], "error: experiment=e2vit is not an option (did you mean e2_vit?): experiment is one of", 2),
    ("train", ["hydra/launcher=jobib"], "error: hydra/launcher=jobib is not an option (did you mean joblib?)", 2),
    ("train", ["data.batch_size=abc"], "data.batch_size='abc' must be an integer", 2),
    ("train", ["trainer.epochs=0"], "trainer.epochs=0 must be positive", 2),
    ("train", ["augmentation.hflip=2"], "augmentation.hflip=2 is a probability in [0, 1]", 2),
    ("train", ["loss.distillation.kind=soft", "loss.distillation.weight=2"], "loss.distillation.weight=2 must lie in [0, 1]", 2),
    ("train", ["loss.label_smoothing=abc"], "loss.label_smoothing='abc' must be a number in [0, 1)", 2),
    ("train", ["+modle=vit_v1"], "modle is not a setting (did you mean model?)", 2),  # the + form of modle=vit_v1
    ("train", ["+lr=0.1"], "lr is not a setting (did you mean optimizer.lr?)", 2),
    ("train", ["+loss.smoothing=0.1"], "loss.smoothing is not a setting (did you mean loss.label_smoothing?)", 2),
    ("train", ["+paths.output=/big/disk"], "paths.output is not a setting (did you mean paths.output_dir?)", 2),
    ("evaluate", ["ckpt={tmp}/missing.pt", "+paths.data_dri=/x"], "paths.data_dri is not a setting (did you mean paths.data_dir?)", 2),
    ("train", ["seed=abc"], "seed='abc' must be a whole number from 0 to", 2),
    ("train", ["seed=-1"], "seed=-1 must be a whole number from 0 to", 2),
    ("train", ["trainer.amp=yes"], "trainer.amp='yes': choose one of auto, bf16, fp16, off", 2),
    ("train", ["data.val_split=train"], "data.val_split='train' is the training split", 2),
    ("train", ["trainer.resume=true"], "trainer.resume=true: use auto (this folder's last checkpoint), never, or", 2),
    ("train", ["augmentation=mixup_cutmix", "data.batch_size=1"], "data.batch_size=1 has none to mix", 2),
    ("evaluate", ["ckpt={tmp}/missing.pt", "+devic=cpu"], "devic is not a setting (did you mean device?)", 2),
    ("predict", ["ckpt={tmp}/missing.pt", "images={tmp}", "+top_k=1"], "top_k is not a setting (did you mean topk?)", 2),
    ("evaluate", ["--help"], "vx-evaluate ckpt=", 0),
    ("predict", ["--help"], "vx-predict ckpt=", 0),
    ("evaluate", [], "ckpt must be given", 2),
    ("evaluate", ["ckpt={tmp}/missing.pt"], "checkpoint not found", 2),
    ("predict", ["ckpt={tmp}/missing.pt", "images={tmp}"], "checkpoint not found", 2),
    ("predict", ["ckpt={tmp}/empty.pt", "images={tmp}/nowhere"], "no such file or folder", 2),
])
def test_config_mistakes_are_answered_before_torch_is_imported(tmp_path, module, args, phrase, code):
    """Printing the config, the help, and a mistake Hydra or a torch-free check catches take a second, not
    the 5-10 s of importing torch, torchvision and timm."""
    (tmp_path / "empty.pt").touch()
    args = [arg.format(tmp=tmp_path) for arg in args]
    if module == "train":
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    result = subprocess.run([sys.executable, "-c", REPORTING_TORCH, f"vision_exp.{module}", *args],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert phrase in output, output
    assert "torch imported: False" in output, output


@pytest.mark.parametrize("line, group", [("vx-train model=", "model"), ("vx-train experiment=", "experiment")])
def test_tab_completion_lists_a_groups_options_without_importing_torch(tmp_path, line, group):
    """Hydra's bash completion (`eval "$(vx-train -sc install=bash)"`) asks the program at every tab: it must answer
    with the group's options, and fast."""
    result = subprocess.run([sys.executable, "-c", REPORTING_TORCH, "vision_exp.train", "-sc", "query=bash"],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert result.returncode == 0, result.stderr
    expected = {f"{group}={path.stem}" for path in (REPO / "conf" / group).glob("*.yaml")}
    assert set(result.stdout.split()) == expected
    assert "torch imported: False" in result.stderr


@pytest.mark.parametrize("command, module", [("vx-train", "train"), ("vx-evaluate", "evaluate"), ("vx-predict", "predict")])
def test_the_entry_points_are_installed_as_commands(command, module):
    """`vx-train ...` is `python -m vision_exp.train ...` (what tab completion needs: a command, not `python -m`)."""
    result = subprocess.run([str(Path(sys.executable).parent / command), "--cfg", "job"], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    reference = subprocess.run([sys.executable, "-m", f"vision_exp.{module}", "--cfg", "job"], capture_output=True,
                               text=True, cwd=REPO, timeout=300)
    assert result.stdout == reference.stdout and result.stdout.strip()


@pytest.mark.parametrize("command", ["vx-summarize", "vx-report"])
def test_the_sweep_tools_are_installed_commands_that_work_from_any_folder(command, tmp_path):
    """No checkout needed (a `pip install` user has no scripts/ folder), and bad input is one line, status 2."""
    result = subprocess.run([str(Path(sys.executable).parent / command), str(tmp_path / "nowhere")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_unknown_option_is_one_clear_message(tiny_folder, tmp_path):
    result = run_cli(tiny_overrides(tiny_folder, "trainer.epochz=3", f"hydra.run.dir={tmp_path / 'run'}"))
    assert_clean_failure(result, "trainer.epochz is not a setting (did you mean trainer.epochs?)")
    assert "+trainer.epochz" not in result.stderr  # Hydra's advice, which the run would refuse
    assert not (tmp_path / "run").exists()


def test_a_primary_config_of_ones_own_is_not_checked_against_conf_train(tmp_path):
    """`-cd <folder> -cn <name>` composes another config than conf/train.yaml, with keys of its own."""
    (tmp_path / "mine.yaml").write_text("defaults:\n  - train\n  - _self_\nnote: 0\n")
    result = subprocess.run([sys.executable, "-m", "vision_exp.train", "-cd", str(tmp_path), "-cn", "mine", "--cfg", "job",
                             "note=1"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "\nnote: 1\n" in result.stdout


def test_unknown_model_is_one_clear_message(tiny_folder, tmp_path):
    result = run_cli(tiny_overrides(tiny_folder, "model=resnet_v9", f"hydra.run.dir={tmp_path / 'run'}"))
    assert_clean_failure(result, "model=resnet_v9 is not an option (did you mean resnet_v")
    assert result.stderr.count("\n") == 1 and not (tmp_path / "run").exists()  # not Hydra's list and search path


def test_bad_input_leaves_an_earlier_run_untouched(tiny_folder, tmp_path):
    run = tmp_path / "run"
    ok = run_cli(tiny_overrides(tiny_folder, f"hydra.run.dir={run}"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    last_line = (ok.stdout + ok.stderr).strip().splitlines()[-1]  # the epoch lines name no folder: this one does
    assert last_line.endswith(f"done: val top-1 {metrics['val_acc']:.2f}% (best {metrics['best_val_acc']:.2f}% at epoch "
                              f"{metrics['best_epoch']}), train top-1 in eval mode {metrics['train_acc']:.2f}%; results in {run}")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.suffix != ".log"}
    again = run_cli(tiny_overrides(tiny_folder, "data.batch_size=-1", f"hydra.run.dir={run}"))
    assert_clean_failure(again, "data.batch_size=-1")
    repeat = run_cli(tiny_overrides(tiny_folder, f"hydra.run.dir={run}"))
    assert_clean_failure(repeat, "already holds a run", "trainer.resume=auto")
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.suffix != ".log"}
    assert after == before


def test_refusing_a_command_keeps_an_interrupted_runs_status(tiny_folder, tmp_path):
    """An interrupted run is resumable: a mistyped command on its folder must not relabel it failed."""
    run = tmp_path / "run"
    ok = run_cli(tiny_overrides(tiny_folder, f"hydra.run.dir={run}"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    interrupted = json.dumps({"status": "interrupted", "error": "stopped by SIGTERM"})
    (run / "metrics.json").write_text(interrupted)
    refused = ((), ("data.batch_size=-1", "trainer.resume=auto"), ("trainer.resume=auto", f"data.root={tmp_path / 'gone'}"),
               (f"trainer.resume={tmp_path / 'nowhere.pt'}",))
    for extra in refused:  # a config error, a data error and a checkpoint error, all before the run starts again
        result = run_cli(tiny_overrides(tiny_folder, f"hydra.run.dir={run}", *extra))
        assert result.returncode == 2, result.stdout + result.stderr
        assert (run / "metrics.json").read_text() == interrupted


def test_a_second_process_in_a_run_folder_stops_without_touching_it(tiny_folder, tmp_path):
    """Two runs started in the same second with the same name share `<name>/<date>_<time>`: the one that
    comes second stops at once, before importing torch, and writes nothing there, not even a failed metrics.json."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a") as held:  # what the first run holds while it trains
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = subprocess.run([sys.executable, "-c", REPORTING_TORCH, "vision_exp.train",
                                 *tiny_overrides(tiny_folder, f"hydra.run.dir={run}")],
                                capture_output=True, text=True, cwd=REPO, timeout=300)
    assert_clean_failure(result, "another process is training in", "hydra.run.dir=")
    assert "torch imported: False" in result.stderr, result.stderr
    assert sorted(p.name for p in run.iterdir() if p.suffix != ".log") == [".lock"]
    ok = run_cli(tiny_overrides(tiny_folder, f"hydra.run.dir={run}"))  # released: the folder is free again
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_removing_a_refused_runs_folders_spares_a_held_folder_and_any_other_file(tmp_path):
    """Two runs started in the same second under one name share a folder: the refused one must not pull
    the log and lock from under the one that trains; nor remove anything it did not write."""
    import fcntl

    from vision_exp.reporting.records import remove_unused_folders

    run = tmp_path / "new" / "run"
    run.mkdir(parents=True)
    (run / "train.log").write_text("the other run's log")
    with open(run / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        remove_unused_folders([run, run.parent])
    assert sorted(p.name for p in run.iterdir()) == [".lock", "train.log"]
    (run / "checkpoints").mkdir()
    assert not remove_unused_folders([run, run.parent])
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "train.log"], "the log says why"
    (run / "checkpoints").rmdir()
    assert remove_unused_folders([run, run.parent])
    assert not (tmp_path / "new").exists()


def test_verbose_shows_the_traceback(tiny_folder, tmp_path):
    result = run_cli(tiny_overrides(tiny_folder, "data.batch_size=0", "hydra.verbose=true", f"hydra.run.dir={tmp_path / 'r'}"))
    assert result.returncode != 0 and "Traceback" in result.stdout + result.stderr


def run_files(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.suffix != ".log"}


def test_a_refused_resume_leaves_the_finished_run_as_it_was(tiny_folder, tmp_path):
    """Resuming a run folder with another model (whose weights would load into the same keys) or from a checkpoint
    that cannot be used stops before config.yaml is rewritten: the run keeps describing its own weights."""
    run = tmp_path / "run"
    ok = run_cli(tiny_overrides(tiny_folder, f"hydra.run.dir={run}"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    before = run_files(run)
    other_block = run_cli(tiny_overrides(tiny_folder, "model=resnet_v2", "trainer.resume=auto", f"hydra.run.dir={run}"))
    assert_clean_failure(other_block, "holds a run of another configuration", "model.block: BasicBlock -> BasicBlockv2")
    missing = run_cli(tiny_overrides(tiny_folder, f"trainer.resume={tmp_path / 'nope.pt'}", f"hydra.run.dir={run}"))
    assert_clean_failure(missing, "checkpoint not found")
    best = run_cli(tiny_overrides(tiny_folder, f"trainer.resume={run / 'checkpoints' / 'best.pt'}", f"hydra.run.dir={run}"))
    assert_clean_failure(best, "holds no optimizer", "resume from last.pt")
    assert run_files(run) == before
    # last.pt deleted to save space: resume=auto trained from scratch over best.pt and the epochs' history
    for checkpoint in (run / "checkpoints").glob("last*"):
        checkpoint.unlink()
    best_weights = (run / "checkpoints" / "best.pt").read_bytes()
    longer = run_cli(tiny_overrides(tiny_folder, "trainer.epochs=2", "trainer.resume=auto", f"hydra.run.dir={run}"))
    assert_clean_failure(longer, f"{run} holds a completed run but no checkpoints/last.pt to continue it from")
    assert run_files(run) == before and (run / "checkpoints" / "best.pt").read_bytes() == best_weights


def test_a_resume_may_lengthen_the_budget(tiny_folder, tmp_path):
    run = tmp_path / "run"
    assert run_cli(tiny_overrides(tiny_folder, f"hydra.run.dir={run}")).returncode == 0
    longer = run_cli(tiny_overrides(tiny_folder, "trainer.epochs=2", "trainer.resume=auto", f"hydra.run.dir={run}"))
    assert longer.returncode == 0, longer.stdout + longer.stderr
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert "epochs: 2" in (run / "config.yaml").read_text()


def test_a_sweep_preset_without_multirun_is_refused(tiny_folder, tmp_path):
    """Without -m Hydra ignores a preset's sweep: the command would train the default experiment instead."""
    result = run_cli(tiny_overrides(tiny_folder, "experiment=cpu_resnet_vs_vit", f"hydra.run.dir={tmp_path / 'run'}"))
    assert_clean_failure(result, "cpu_resnet_vs_vit is a sweep preset", "-m")
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_data_folder_without_a_root_is_refused(tmp_path):
    """data=folder inherits Imagenette's settings; it must not inherit its root and train on Imagenette."""
    result = run_cli(["data=folder", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_failure(result, "data.root is not set", "data=folder")


@pytest.mark.parametrize("checkpointed", [False, True])
def test_a_run_stopped_at_once_says_what_is_left_without_a_traceback(tiny_folder, tmp_path, checkpointed):
    """Ctrl-C before the trainer listens for signals (imports, decoding the cache), or a second signal while it
    saves, stops at once: one line saying whether a checkpoint resumes it, and exit status 130; Ctrl-C pressed
    again while it says so changes nothing."""
    run = tmp_path / "run"
    if checkpointed:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.pt").touch()
    interrupted = ("import sys, vision_exp.experiment as experiment\n"
                   "def interrupted(*args, **kwargs): raise KeyboardInterrupt\n"
                   "experiment.run_experiment = interrupted\n"
                   "import os, signal, vision_exp.train as train\n"
                   "error = train.log.error\n"
                   "def pressed_again(*args): os.kill(os.getpid(), signal.SIGINT); error(*args)\n"
                   "train.log.error = pressed_again\n"
                   "from vision_exp.train import main\n"
                   "sys.argv[0] = 'train.py'\n"
                   "main()\n")
    result = subprocess.run([sys.executable, "-c", interrupted, *tiny_overrides(tiny_folder, f"hydra.run.dir={run}")],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 130 and "Traceback" not in output, output
    expected = (f"the last checkpoint in {run / 'checkpoints'} resumes: run the same command with hydra.run.dir={run} "
                f"trainer.resume=auto") if checkpointed else f"before the run saved a checkpoint: nothing to resume in {run}"
    assert expected in output, output


def test_a_sweep_job_stopped_before_its_first_checkpoint_names_the_sweep_folder(tmp_path):
    """Run again without hydra.sweep.dir, a stopped sweep would start over in a new folder: the advice names it."""
    from vision_exp.train import stopped_at_once

    sweep = tmp_path / "multirun"
    message = stopped_at_once(sweep / "1", sweep)
    assert f"nothing to resume in {sweep / '1'}" in message
    assert f"run the same command with hydra.sweep.dir={sweep}" in message


def overfit_overrides(tmp_path) -> list:
    """debug=overfit on 6 images (2 per class of 3) of 16 px, which a small ResNet memorises."""
    folder = write_image_folder(tmp_path / "data")
    return ["data=folder", f"data.root={folder}", "data.num_classes=3", "data.batch_size=6", "data.img_size=16",
            "data.num_workers=0", "model.widths=[8,8,16,16]", "model.stem_stride=1", "debug=overfit"]


@pytest.mark.parametrize("lr, passed", [(None, True), (1e-9, False)])
def test_debug_overfit_says_whether_the_network_memorised_its_batch(tmp_path, lr, passed):
    """The run's last line is the check's verdict: a small ResNet memorises its 6 images; with a learning rate that
    rounds to nothing it does not, and the command exits with status 2 saying what to look at, the completed run's
    metrics.json kept as it was."""
    run_dir = tmp_path / "run"
    result = run_cli([*overfit_overrides(tmp_path), f"hydra.run.dir={run_dir}", *([f"optimizer.lr={lr}"] if lr else [])])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 100 and metrics["samples_seen"] == 600
    if passed:
        assert result.returncode == 0, result.stderr
        assert metrics["train_acc"] == 100.0
        assert "overfit check passed: the training images were memorised (train top-1 100.00% in eval mode" in result.stdout
    else:
        assert_clean_failure(result, "overfit check failed: the training images were not memorised (train top-1 ",
                             "after 100 steps); a network wired right fits them")
        assert metrics["train_acc"] < 100.0


def test_a_debug_overfit_sweep_ends_with_status_1_naming_the_jobs_that_did_not_memorise(tmp_path):
    """`-m model=vit_v1,vit_v2,vit_v3 debug=overfit` checks several networks at once. Each job logs its verdict and
    the sweep goes on; its last line names the jobs that failed the check, and it exits with status 1, though every
    job completed."""
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *overfit_overrides(tmp_path), "optimizer.lr=0.001,1e-9", f"hydra.sweep.dir={sweep}"])
    assert_clean_failure(result, "overfit check passed", "the overfit check failed in 1 of 2 completed jobs (their "
                         "training images were not memorised): job 1 (train top-1 ", "a network wired right fits them",
                         code=1)
    assert "job 0 (" not in result.stdout + result.stderr
    assert [json.loads((sweep / job / "metrics.json").read_text())["status"] for job in "01"] == ["completed"] * 2
