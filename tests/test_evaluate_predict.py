"""evaluate and predict CLIs on a checkpoint of a tiny run."""
import csv
import dataclasses
import json
import subprocess
import sys

import pytest

from conftest import REPO, compose, tiny_overrides, write_image_folder
from vision_exp.experiment import run_experiment


@pytest.fixture(scope="module")
def trained_run(tiny_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("evalrun") / "run"
    run_experiment(compose(tiny_overrides(tiny_folder, "trainer.epochs=2")), run, [])
    return run


def cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_evaluate_writes_metrics_per_class_and_confusion_beside_the_checkpoint(trained_run):
    result = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}")
    assert result.returncode == 0, result.stdout + result.stderr
    out = trained_run / "checkpoints" / "best-eval-run-data"
    metrics = json.loads((out / "metrics.json").read_text())
    run_metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(run_metrics["best_val_acc"], abs=1e-6)
    assert metrics["top5"] is None and metrics["images"] == 12  # 3 classes: every label is among the 5 best
    assert "top-5 n/a (5 classes or fewer)" in result.stdout + result.stderr
    assert set(metrics["per_class"]) == {"tench", "English springer", "cassette player"}
    rows = list(csv.reader((out / "confusion.csv").open()))
    assert len(rows) == 4 and sum(int(v) for row in rows[1:] for v in row[1:]) == 12
    assert (out / "confusion.png").stat().st_size > 1000 and not list(out.glob(".*"))  # no temporary file left
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert events.Tags()["images"] == ["eval/confusion"]
    assert events.Scalars("eval/top1")[0].value == pytest.approx(metrics["top1"], abs=1e-4)
    assert "top-1" in result.stdout + result.stderr


def test_evaluate_on_another_data_choice_keeps_the_run_classes(trained_run, tiny_folder):
    result = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'last.pt'}", "data=folder",
                 f"data.root={tiny_folder}", "data.max_val_per_class=2", "data.loader=folder", "data.num_workers=0")
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((trained_run / "checkpoints" / "last-eval-folder" / "metrics.json").read_text())
    assert metrics["images"] == 6 and metrics["data"] == "folder"


def test_evaluate_on_another_dataset_decodes_only_its_val_split(trained_run, tiny_folder, tmp_path):
    """Evaluating on ImageNet must not decode its 1.28 million training images into a cache first."""
    result = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", "data=folder",
                 f"data.root={tiny_folder}", "data.name=other", "data.loader=cached", "data.num_workers=0")
    assert result.returncode == 0, result.stdout + result.stderr
    built = sorted(entry.name for entry in (tmp_path / "cache").iterdir())
    assert built and all(name.startswith("other-val-") for name in built), built
    assert json.loads((trained_run / "checkpoints" / "best-eval-other" / "metrics.json").read_text())["images"] == 12


def test_evaluate_on_the_val_folder_itself_names_its_parent(trained_run, tiny_folder, tmp_path):
    """data.root=<dataset>/val is a slip: the fix is its parent, not a train/ folder evaluation never reads."""
    import shutil

    shutil.copytree(tiny_folder / "val", tmp_path / "val_only" / "val")
    result = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", "data=folder",
                 f"data.root={tmp_path / 'val_only' / 'val'}", "data.num_workers=0", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"data.root={tmp_path / 'val_only' / 'val'} is the val/ split folder: set data.root={tmp_path / 'val_only'}, "
            "the folder that holds val/\n") in result.stdout + result.stderr
    assert not (tmp_path / "eval").exists()


def test_evaluate_caches_where_data_cache_dir_says(trained_run, tmp_path):
    """The run's cache folder may be another machine's (/kaggle/working/cache, not writable here): the advice to set
    data.cache_dir must work as given, with no plus."""
    result = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", "data.loader=cached",
                 f"data.cache_dir={tmp_path / 'here'}", "data.num_workers=0", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stdout + result.stderr
    built = [entry.name for entry in (tmp_path / "here").iterdir()]
    assert built and all("-val-" in name for name in built), built
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["images"] == 12


def test_evaluate_on_a_folder_with_only_a_val_split(trained_run, tiny_folder, tmp_path):
    import shutil

    shutil.copytree(tiny_folder / "val", tmp_path / "val_only" / "val")
    result = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", "data=folder",
                 f"data.root={tmp_path / 'val_only'}", "data.name=val_only", "data.num_workers=0")
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((trained_run / "checkpoints" / "best-eval-val_only" / "metrics.json").read_text())
    assert metrics["images"] == 12 and metrics["top1"] == pytest.approx(
        json.loads((trained_run / "metrics.json").read_text())["best_val_acc"], abs=1e-6)


@pytest.mark.parametrize("loader", ["folder", "cached"])
def test_evaluate_leaves_an_unreadable_image_out_of_its_counts(trained_run, tiny_folder, tmp_path, loader):
    """Training stands another image in for an unreadable one; an evaluation must not score a stand-in: 11 images
    of 12, with either loader. With none readable, one message."""
    import shutil

    data = shutil.copytree(tiny_folder, tmp_path / "damaged")
    images = sorted((data / "val").rglob("*.JPEG"))
    images[0].write_bytes(b"not an image")
    args = ["data=folder", f"data.root={data}", "data.name=damaged", f"data.loader={loader}", "data.num_workers=0"]
    result = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", *args,
                 f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["images"] == 11
    for image in [*images, *(data / "val").rglob("*.png")]:
        image.write_bytes(b"not an image")
    refused = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", *args,
                  f"hydra.run.dir={tmp_path / 'none'}")
    output = refused.stdout + refused.stderr
    last_line = output.strip().splitlines()[-1]
    assert refused.returncode == 2 and "Traceback" not in output and "unreadable" in last_line, output


def test_another_data_choice_keeps_the_run_preprocessing(tiny_folder):
    """The data group's own defaults (crop_pct, cache_size, normalisation) must not replace what the model was
    trained with; where the images are and how many to take are the user's choice."""
    from omegaconf import OmegaConf

    from vision_exp.evaluate import evaluation_data

    run_data = compose(tiny_overrides(tiny_folder, "data.crop_pct=1.0", "data.cache_size=20", "data.mean=[0.5,0.5,0.5]",
                                      "data.std=[0.25,0.25,0.25]")).data
    chosen = compose(["data=folder", f"data.root={tiny_folder}", "data.max_val_per_class=2"]).data
    data = evaluation_data(run_data, chosen, {"classes": ["n01440764", "n02102040"]})
    assert (data.img_size, data.crop_pct, data.cache_size, data.mean, data.std) == (16, 1.0, 20, (0.5,) * 3, (0.25,) * 3)
    assert data.root == str(tiny_folder) and data.max_val_per_class == 2
    assert data.classes == ["n01440764", "n02102040"] and data.num_classes == 2
    assert OmegaConf.select(chosen, "crop_pct") != 1.0, "the test needs a data group whose default differs"


def test_predict_prints_topk_names_and_writes_csv(trained_run, tiny_folder):
    images = tiny_folder / "val" / "n01440764"
    result = cli("vision_exp.predict", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", f"images={images}", "topk=2")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if ".JPEG:" in line or ".png:" in line]
    assert len(lines) == 4 and all(line.count("%)") == 2 for line in lines)
    rows = list(csv.DictReader((trained_run / "checkpoints" / "best-predictions" / "predictions.csv").open()))
    assert len(rows) == 4 and all(row["top1"] in {"tench", "English springer", "cassette player"} for row in rows)
    assert all(float(row["p1"]) >= float(row["p2"]) for row in rows)


def test_missing_checkpoint_is_one_message(tmp_path):
    for module, extra in (("vision_exp.predict", [f"images={tmp_path}"]), ("vision_exp.evaluate", [])):
        result = cli(module, f"ckpt={tmp_path / 'best.pt'}", *extra)
        assert result.returncode == 2 and "checkpoint not found" in result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert list(tmp_path.iterdir()) == [], "no output folder for a checkpoint that does not exist"


def test_an_output_folder_left_with_only_the_log_of_a_refused_command_is_used_again(tmp_path):
    from vision_exp.cli import beside

    checkpoint = tmp_path / "best.pt"
    (tmp_path / "best-eval-folder").mkdir()
    (tmp_path / "best-eval-folder" / "evaluate.log").write_text("error: ...")
    assert beside(str(checkpoint), "eval-folder") == str(tmp_path / "best-eval-folder")
    (tmp_path / "best-eval-folder" / "metrics.json").write_text("{}")
    assert beside(str(checkpoint), "eval-folder") == str(tmp_path / "best-eval-folder-2")


def run_copy(trained_run, tmp_path):
    """The trained run in a folder of the test's own: its checkpoints' folder starts with no evaluation."""
    import shutil

    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("*-eval-*", "*-predictions*"))
    return run / "checkpoints"


def test_a_refused_evaluate_leaves_no_folder_behind(trained_run, tiny_folder, tmp_path):
    """A refused command is not a result: the folder made for it goes again (with the parents made for it),
    a folder that was there before keeps what it held, and a second command finds no earlier error."""
    checkpoints = run_copy(trained_run, tmp_path)
    (tmp_path / "bad.jpg").write_bytes(b"not a checkpoint")
    refused = cli("vision_exp.evaluate", f"ckpt={tmp_path / 'bad.jpg'}")
    assert refused.returncode == 2 and "not a PyTorch checkpoint" in refused.stdout + refused.stderr
    assert not (tmp_path / "bad-eval-run-data").exists()

    good = cli("vision_exp.evaluate", f"ckpt={checkpoints / 'best.pt'}", "data=folder", f"data.root={tiny_folder}",
               "data.num_workers=0")
    assert good.returncode == 0, good.stdout + good.stderr
    earlier = {path: path.read_bytes() for path in (checkpoints / "best-eval-folder").rglob("*") if path.is_file()}
    other_classes = write_image_folder(tmp_path / "other", classes=("n03000684", "n03028079"), per_split={"val": 1})
    for root, phrase in ((tmp_path / "nope", "dataset folder not found"), (other_classes, "are not class folders")):
        refused = cli("vision_exp.evaluate", f"ckpt={checkpoints / 'best.pt'}", "data=folder", f"data.root={root}",
                      "data.num_workers=0")
        assert refused.returncode == 2 and phrase in refused.stdout + refused.stderr, refused.stdout + refused.stderr
        assert sorted(path.name for path in checkpoints.glob("best-eval-*")) == ["best-eval-folder"]
        assert {path: path.read_bytes() for path in earlier} == earlier

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for folder in (tmp_path / "made" / "for" / "it", kept):
        refused = cli("vision_exp.evaluate", f"ckpt={checkpoints / 'best.pt'}", "data=folder", f"data.root={tmp_path / 'nope'}",
                      f"hydra.run.dir={folder}")
        assert refused.returncode == 2, refused.stdout + refused.stderr
    assert not (tmp_path / "made").exists()
    assert (kept / "notes.txt").read_text() == "mine"

    again = cli("vision_exp.evaluate", f"ckpt={checkpoints / 'best.pt'}", "data=folder", f"data.root={other_classes}",
                "data.num_workers=0")
    assert again.returncode == 2
    good = cli("vision_exp.evaluate", f"ckpt={checkpoints / 'best.pt'}", "data=folder", f"data.root={tiny_folder}",
               "data.num_workers=0")
    assert good.returncode == 0, good.stdout + good.stderr
    log = (checkpoints / "best-eval-folder-2" / "evaluate.log").read_text()
    assert "top-1" in log and "ERROR" not in log, log


def test_an_evaluate_log_holds_only_its_own_run(trained_run, tmp_path):
    """A folder left with the log of a command that failed there (a crash, or an earlier version's refusal) is
    used again, and its log then tells of this run alone; data.eval_batch_size, the advice after running out of
    memory, is taken as written, without the plus Hydra asks for a setting the config does not declare."""
    checkpoints = run_copy(trained_run, tmp_path)
    (checkpoints / "best-eval-run-data").mkdir()
    (checkpoints / "best-eval-run-data" / "evaluate.log").write_text("[...][vision_exp.evaluate][ERROR] - earlier\n")
    result = cli("vision_exp.evaluate", f"ckpt={checkpoints / 'best.pt'}", "data.eval_batch_size=5", "data.num_workers=0")
    assert result.returncode == 0, result.stdout + result.stderr
    log = (checkpoints / "best-eval-run-data" / "evaluate.log").read_text()
    assert "top-1" in log and "earlier" not in log, log
    assert json.loads((checkpoints / "best-eval-run-data" / "metrics.json").read_text())["images"] == 12


def test_the_run_data_settings_evaluate_declares_keep_the_run_values_unless_given(tiny_folder):
    """`data.eval_batch_size=8` (no plus) changes that setting alone; without it, and under env=, the run's own."""
    from vision_exp.evaluate import evaluation_data

    run_data = compose(tiny_overrides(tiny_folder, "data.eval_batch_size=6", "data.max_val_per_class=3")).data
    state = {"classes": ["n01440764", "n02102040"]}
    as_run = evaluation_data(run_data, None, state)
    assert (as_run.eval_batch_size, as_run.num_workers, as_run.max_val_per_class) == (6, 0, 3)
    assert evaluation_data(run_data, compose(["ckpt=x.pt"], "evaluate").data, state) == as_run
    given = compose(["ckpt=x.pt", "data.eval_batch_size=8", "env=kaggle"], "evaluate").data
    data = evaluation_data(run_data, given, state)
    assert data == dataclasses.replace(as_run, eval_batch_size=8, num_workers=4)


def test_predict_missing_images(trained_run, tmp_path):
    """Refused, and without the `<checkpoint>-predictions/` folder that held only the refusal's log."""
    checkpoints = run_copy(trained_run, tmp_path)
    result = cli("vision_exp.predict", f"ckpt={checkpoints / 'best.pt'}", f"images={tmp_path / 'none'}")
    assert result.returncode == 2 and "no such file or folder" in result.stdout + result.stderr
    (tmp_path / "bad.jpg").write_bytes(b"not a checkpoint")
    result = cli("vision_exp.predict", f"ckpt={tmp_path / 'bad.jpg'}", f"images={tmp_path / 'bad.jpg'}")
    assert result.returncode == 2 and "not a PyTorch checkpoint" in result.stdout + result.stderr
    assert not list(checkpoints.glob("best-predictions*")) and not (tmp_path / "bad-predictions").exists()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels: what PIL takes for a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")


def test_predict_reads_the_images_a_folder_shows_not_its_hidden_files(tmp_path):
    """macOS's AppleDouble `._<name>` files are no images (a warning each) and a notebook's checkpoint folder
    holds copies (extra rows); a hidden folder above the one named is the user's choice, not skipped."""
    from vision_exp.predict import image_files

    folder = tmp_path / ".work" / "images"
    for name in ("a.jpg", "._a.jpg", ".ipynb_checkpoints/a.jpg", "sub/b.png", "notes.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    assert image_files(folder) == [folder / "a.jpg", folder / "sub" / "b.png"]
    assert image_files(folder / "._a.jpg") == [folder / "._a.jpg"]  # named itself: read, and refused if no image


def test_predict_skips_an_unreadable_image_and_caps_topk_at_the_classes(trained_run, tiny_folder, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for source in sorted((tiny_folder / "val" / "n01440764").iterdir())[:2]:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "broken.JPEG").write_bytes(b"not an image")
    (folder / "bomb.png").write_bytes(png_claiming(20000, 20000))  # PIL refuses it with a DecompressionBombError
    result = cli("vision_exp.predict", f"ckpt={trained_run / 'checkpoints' / 'last.pt'}", f"images={folder}", "topk=20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" in result.stdout + result.stderr and "broken.JPEG" in result.stdout + result.stderr
    assert "skipped" in result.stdout + result.stderr and "bomb.png" in result.stdout + result.stderr
    (folder / "bomb.png").unlink()
    with (trained_run / "checkpoints" / "last-predictions" / "predictions.csv").open() as table:
        rows = list(csv.reader(table))
    assert rows[0] == ["image", "top1", "top2", "top3", "p1", "p2", "p3"]  # 3 classes, not 20 columns
    assert len(rows) == 3 and all(len(row) == 7 for row in rows)
    (folder / "broken.JPEG").rename(tmp_path / "broken.JPEG")
    for good in folder.iterdir():
        good.unlink()
    (tmp_path / "broken.JPEG").rename(folder / "broken.JPEG")
    result = cli("vision_exp.predict", f"ckpt={trained_run / 'checkpoints' / 'last.pt'}", f"images={folder}")
    assert result.returncode == 2 and "none of the 1 image files" in result.stdout + result.stderr


def test_predicting_again_keeps_the_earlier_predictions(trained_run, tiny_folder):
    checkpoint = trained_run / "checkpoints" / "best.pt"
    first = cli("vision_exp.predict", f"ckpt={checkpoint}", f"images={tiny_folder / 'val'}")
    assert first.returncode == 0, first.stdout + first.stderr
    written = sorted(checkpoint.parent.glob("best-predictions*/predictions.csv"))
    earlier = {path: path.read_bytes() for path in written}
    one_image = next((tiny_folder / "val" / "n02979186").iterdir())
    second = cli("vision_exp.predict", f"ckpt={checkpoint}", f"images={one_image}")
    assert second.returncode == 0, second.stdout + second.stderr
    new = sorted(set(checkpoint.parent.glob("best-predictions*/predictions.csv")) - set(earlier))
    assert len(new) == 1 and len(list(csv.DictReader(new[0].open()))) == 1
    assert all(path.read_bytes() == content for path, content in earlier.items())
    assert str(new[0]) in second.stdout + second.stderr


def test_evaluate_takes_the_notebook_environments(trained_run, tmp_path):
    """env=kaggle sets the paths and loader workers: vx-evaluate refused it ("trainer is not a setting")."""
    import os

    env = {**os.environ, "VISION_EXP_DATA": str(tmp_path), "VISION_EXP_OUTPUT": str(tmp_path),
           "VISION_EXP_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}",
                             "env=kaggle", "hydra.run.dir=" + str(tmp_path / "eval")], capture_output=True, text=True,
                            cwd=REPO, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["images"] == 12


def test_predict_takes_env_local_and_says_why_not_the_notebook_ones(trained_run, tiny_folder):
    args = (f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", f"images={tiny_folder / 'val'}")
    assert cli("vision_exp.predict", *args, "env=local").returncode == 0
    refused = cli("vision_exp.predict", *args, "env=kaggle")
    assert refused.returncode == 2 and "data is not a setting (env=kaggle sets the data loader's workers" in refused.stderr


@pytest.mark.parametrize("module, extra", [("vision_exp.evaluate", []), ("vision_exp.predict", ["images=x"])])
def test_a_misspelt_mandatory_setting_is_named(module, extra):
    result = cli(module, "+ckp=x.pt", *extra)
    assert result.returncode == 2 and "ckp is not a setting (did you mean ckpt?)" in result.stderr, result.stderr


@pytest.mark.parametrize("module, args, phrase", [
    ("vision_exp.evaluate", [], "ckpt must be given"),
    ("vision_exp.predict", ["ckpt=x.pt"], "images must be given"),
])
def test_a_missing_mandatory_value_is_one_line(module, args, phrase):
    result = cli(module, *args)
    assert result.returncode == 2 and phrase in result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("option, phrase", [("topk=0", "topk=0 must be a positive integer"),
                                            ("batch_size=0", "batch_size=0 must be a positive integer"),
                                            ("topk=five", "topk='five' must be a positive integer"),
                                            ("device=gpu", "device='gpu' is not a device")])
def test_bad_predict_options_are_one_message(trained_run, tiny_folder, option, phrase):
    result = cli("vision_exp.predict", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", f"images={tiny_folder / 'val'}",
                 option)
    assert result.returncode == 2 and phrase in result.stdout + result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_checkpoints_evaluate_cannot_use_are_one_message(trained_run, tmp_path):
    import torch

    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")  # a bare state_dict, not a run's checkpoint
    (tmp_path / "empty.pt").write_bytes(b"")
    cases = ((tmp_path / "plain.pt", "not a checkpoint of a vision-exp run"),
             (tmp_path / "empty.pt", "not a PyTorch checkpoint"),
             (trained_run, f"is a folder, not a checkpoint: name a file in it, e.g. {trained_run / 'checkpoints' / 'best.pt'}"))
    for checkpoint, phrase in cases:
        result = cli("vision_exp.evaluate", f"ckpt={checkpoint}")
        assert result.returncode == 2 and phrase in result.stdout + result.stderr, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    wrong_amp = cli("vision_exp.evaluate", f"ckpt={trained_run / 'checkpoints' / 'best.pt'}", "amp=fp32")
    assert wrong_amp.returncode == 2 and "amp='fp32'" in wrong_amp.stdout + wrong_amp.stderr
    assert "trainer.amp" not in wrong_amp.stdout + wrong_amp.stderr


def test_loading_a_trained_model_imports_nothing_of_training():
    """evaluate and predict need a model: not the trainer, the loaders, TensorBoard or the sweeps."""
    probe = ("import sys; from vision_exp.builder import load_trained_model; "
             "print(sorted(m for m in sys.modules if m.startswith(('vision_exp.training.trainer', 'vision_exp.data.loaders', "
             "'vision_exp.sweeps', 'vision_exp.reporting.run', 'torch.utils.tensorboard'))))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_running_out_of_memory_while_evaluating_names_a_smaller_eval_batch(trained_run, tmp_path, monkeypatch):
    """One line naming the setting that fixes it, as training's own evaluation passes give, not a traceback."""
    import torch

    from vision_exp.errors import UserError
    from vision_exp.evaluate import evaluate_checkpoint
    from vision_exp.training import evaluation

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(evaluation, "evaluate", out_of_memory)
    checkpoints = run_copy(trained_run, tmp_path)
    cfg = compose([f"ckpt={checkpoints / 'best.pt'}", "data.eval_batch_size=6"], "evaluate")
    with pytest.raises(UserError, match=r"ran out of memory evaluating with data.eval_batch_size=6: run again with "
                                        r"data.eval_batch_size=3 \(the same metrics"):
        evaluate_checkpoint(cfg, tmp_path / "out")


def test_ctrl_c_while_evaluating_is_one_line_and_leaves_no_folder(trained_run, tmp_path):
    """Exit status 130 without a traceback, also when Ctrl-C is pressed again while the line is written."""
    checkpoints = run_copy(trained_run, tmp_path)
    script = ("import os, signal, sys, vision_exp.evaluate as evaluate\n"
              "def interrupted(*args): raise KeyboardInterrupt\n"
              "evaluate.evaluate_checkpoint = interrupted\n"
              "error = evaluate.log.error\n"
              "def pressed_again(*args): os.kill(os.getpid(), signal.SIGINT); error(*args)\n"
              "evaluate.log.error = pressed_again\n"
              "sys.argv[0] = 'evaluate.py'\n"
              "evaluate.main()\n")
    result = subprocess.run([sys.executable, "-c", script, f"ckpt={checkpoints / 'best.pt'}"], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 130 and "stopped by Ctrl-C" in output and "Traceback" not in output, output
    assert not list(checkpoints.glob("best-eval-*"))


def test_a_predicted_folders_log_is_its_own(trained_run, tiny_folder, tmp_path):
    """A folder left holding only the log of a command that failed there is used again; its log then tells of this
    command alone."""
    checkpoints = run_copy(trained_run, tmp_path)
    (checkpoints / "best-predictions").mkdir()
    (checkpoints / "best-predictions" / "predict.log").write_text("[...][vision_exp.predict][ERROR] - earlier\n")
    result = cli("vision_exp.predict", f"ckpt={checkpoints / 'best.pt'}", f"images={tiny_folder / 'val'}")
    assert result.returncode == 0, result.stdout + result.stderr
    log = (checkpoints / "best-predictions" / "predict.log").read_text()
    assert "written to" in log and "earlier" not in log, log


def test_a_run_whose_initialisation_is_refused_for_training_still_loads(trained_run, tmp_path):
    """zero_init_residual with BasicBlockv3 is refused for training (its branches could not learn), but a run made
    with it before has weights that evaluate, predict and distillation load: the initialisation is replaced anyway."""
    from omegaconf import OmegaConf

    from vision_exp.builder import load_trained_model

    checkpoints = run_copy(trained_run, tmp_path)
    config = OmegaConf.load(checkpoints.parent / "config.yaml")
    config.model.block, config.model.zero_init_residual = "BasicBlockv3", True  # v1 and v3 share their weights' names
    OmegaConf.save(config, checkpoints.parent / "config.yaml")
    model, run_cfg, _ = load_trained_model(checkpoints / "best.pt")
    assert type(model.layer1[0]).__name__ == "BasicBlockv3" and run_cfg.model.zero_init_residual


def test_a_trained_model_loads_its_checkpoint_without_initialising_weights(tmp_path):
    """evaluate, predict and a distillation teacher get the checkpoint's weights and buffers (a sin-cos position
    table, BatchNorm statistics) exactly, on the CPU, without first drawing weights the checkpoint replaces:
    no random numbers, and no mimetic SVDs, whose cost grows with the model."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from vision_exp.builder import load_trained_model
    from vision_exp.training.checkpoint import save_checkpoint

    model_cfg = {"_target_": "vision_exp.models.vit.ViT", "img_size": 16, "patch_size": 4, "num_classes": 3,
                 "embed_dim": 16, "depth": 2, "num_heads": 2, "init": "mimetic", "pos_embed": "sincos",
                 "stem": "conv", "drop_path": 0.1}
    trained = instantiate(OmegaConf.create(model_cfg))
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(torch.randn_like(parameter))  # weights no initialisation would draw
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    OmegaConf.save({"model": model_cfg}, run / "config.yaml")
    save_checkpoint({"model": trained.state_dict()}, run / "checkpoints" / "best.pt")

    rng_before = torch.random.get_rng_state()
    model, _, _ = load_trained_model(run / "checkpoints" / "best.pt")
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    loaded = model.state_dict()
    assert loaded.keys() == trained.state_dict().keys()
    for key, value in trained.state_dict().items():
        assert loaded[key].device.type == "cpu" and torch.equal(loaded[key], value), key
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(model.eval()(images), trained.eval()(images))


def test_evaluation_counts_top1_top5_loss_and_confusion_as_a_count_by_hand():
    """On known logits: top-1/top-5 from the true class's rank, the mean cross-entropy over every image (batches of
    different sizes), the confusion matrix with rows the true class; in eval mode (a dropout model would change the
    logits), the model's mode restored after."""
    import torch
    import torch.nn.functional as F

    from vision_exp.training.evaluation import evaluate

    torch.manual_seed(0)
    classes = 7
    labels = torch.randint(0, classes, (16,))
    logits = torch.randn(16, classes) + 2 * F.one_hot(labels, classes) * (torch.arange(16) % 2)[:, None]  # half easy
    batches = [(logits[:5], labels[:5]), (logits[5:13], labels[5:13]), (logits[13:], labels[13:])]
    model = torch.nn.Dropout(0.9).train()
    result = evaluate(model, batches, torch.device("cpu"), num_classes=classes)
    assert model.training
    rank = (logits > logits.gather(1, labels[:, None])).sum(1)  # classes scored above the true one
    expected_confusion = torch.zeros(classes, classes, dtype=torch.long)
    for true, predicted in zip(labels.tolist(), logits.argmax(1).tolist()):
        expected_confusion[true, predicted] += 1
    assert 0 < (rank == 0).sum() < (rank < 5).sum() < len(labels), "the test needs misses at both ranks"
    assert (rank == 0).sum() != (rank == 1).sum()
    assert not torch.equal(expected_confusion, expected_confusion.T)
    assert result["count"] == 16
    assert result["acc"] == pytest.approx(100 * (rank == 0).double().mean().item())
    assert result["acc5"] == pytest.approx(100 * (rank < 5).double().mean().item())
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert torch.equal(result["confusion"], expected_confusion)
    five = evaluate(model, [(logits[:, :5], labels.clamp(max=4))], torch.device("cpu"))
    assert five["acc5"] is None and five["acc"] < 100  # every label among the 5 best says nothing: no top-5


def test_per_class_accuracy_reads_the_rows_and_has_none_for_a_class_without_images(tmp_path):
    """Rows are the true class: a class's accuracy is its diagonal over its row. A class with no validation image
    (a subset, a small split) has no accuracy, not 0%, in metrics.json and per_class.csv alike; TensorBoard gets top-5
    only where it means something."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vision_exp.reporting.evaluation import per_class_accuracy, write_evaluation

    confusion = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
    assert per_class_accuracy(confusion) == [75.0, None, 50.0]
    result = {"confusion": confusion, "acc": 62.5, "acc5": None, "loss": 1.0, "count": 8}
    summary = write_evaluation(tmp_path, result, ["a", "b", "c"], {"checkpoint": "best.pt"})
    assert summary["per_class"] == {"a": 75.0, "b": None, "c": 50.0}
    assert (tmp_path / "per_class.csv").read_text().splitlines() == ["class,images,accuracy", "a,4,75.00", "b,0,",
                                                                      "c,4,50.00"]
    write_evaluation(tmp_path / "six", {**result, "acc5": 87.5}, ["a", "b", "c"], {})  # top-5 of more classes
    for folder, scalars in ((tmp_path, ["eval/top1", "eval/loss"]), (tmp_path / "six", ["eval/top1", "eval/top5",
                                                                                         "eval/loss"])):
        events = EventAccumulator(str(folder / "tb"))
        events.Reload()
        assert events.Tags()["scalars"] == scalars


def test_predictions_are_the_evaluated_model_with_its_class_names(trained_run, tiny_folder):
    """With every class listed, predict's probabilities of the val images give the run's own evaluation of best.pt
    (its accuracy and loss: the same normalised pixels, eval mode, names in the order of the head's outputs), and an
    image's probabilities do not depend on the images predicted beside it."""
    import math
    from pathlib import Path

    from vision_exp.predict import predict
    from vision_exp.training.checkpoint import load_checkpoint

    checkpoint = trained_run / "checkpoints" / "best.pt"
    state = load_checkpoint(checkpoint)
    name_of = dict(zip(state["classes"], state["class_names"]))
    rows = predict(checkpoint, tiny_folder / "val", topk=3, device="cpu")
    assert len(rows) == 12
    summary = json.loads((trained_run / "metrics.json").read_text())
    epochs = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    best = next(e for e in epochs if e["epoch"] == summary["best_epoch"])
    probability = [dict(top)[name_of[Path(path).parent.name]] for path, top in rows]
    right = [top[0][0] == name_of[Path(path).parent.name] for path, top in rows]
    assert 100 * sum(right) / len(rows) == pytest.approx(summary["best_val_acc"], abs=1e-6)
    assert -sum(map(math.log, probability)) / len(rows) == pytest.approx(best["val/loss"], rel=1e-4)
    alone = predict(checkpoint, Path(rows[5][0]), topk=3, device="cpu")
    assert alone[0][1] == [(name, pytest.approx(p, abs=1e-5)) for name, p in rows[5][1]]


def test_results_are_never_replaced_by_an_evaluation_a_prediction_or_a_run_told_to_write_over_them(trained_run, tiny_folder,
                                                                                                  tmp_path):
    """hydra.run.dir / out_dir naming a folder with results: an evaluation replaced a run's metrics.json (and mixed
    its events into the run's tb/), and a run replaced an evaluation's metrics.json and deleted its tb/."""
    import vision_exp
    from vision_exp.errors import ConfigError

    checkpoints = run_copy(trained_run, tmp_path)
    run = checkpoints.parent
    def files(folder):  # but logs and the lock a refused run takes
        return {path: path.read_bytes() for path in folder.rglob("*")
                if path.is_file() and path.suffix != ".log" and path.name != ".lock"}

    kept = files(run)
    result = cli("vision_exp.evaluate", f"ckpt={checkpoints / 'best.pt'}", "data.num_workers=0", f"hydra.run.dir={run}")
    assert result.returncode == 2 and result.stderr == (
        f"error: {run} already holds results (checkpoints, config.yaml, curves.png, ...), which this command would replace: "
        f"name a new or empty folder (hydra.run.dir=..., out_dir= in Python), or leave it out for a new one beside the "
        f"checkpoint\n"), result.stdout + result.stderr
    evaluation = tmp_path / "evaluation"
    vision_exp.evaluate(checkpoints / "best.pt", ["data.num_workers=0"], out_dir=evaluation)
    with pytest.raises(ConfigError, match=f"^{evaluation} already holds results \\(confusion.csv, confusion.png, metrics.json, ...\\)"):
        vision_exp.predict(checkpoints / "best.pt", tiny_folder / "val", out_dir=evaluation)
    evaluated = files(evaluation)
    with pytest.raises(ConfigError, match=f"^{evaluation} holds results that are not a run's \\(its metrics.json, e.g. an "
                                          f"evaluation's\\), which this run would replace: choose another hydra.run.dir$"):
        run_experiment(compose(tiny_overrides(tiny_folder)), evaluation, [])
    assert files(run) == kept and files(evaluation) == evaluated and (evaluation / "tb").is_dir()
