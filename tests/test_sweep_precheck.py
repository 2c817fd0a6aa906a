"""A sweep checks every job's values before the first job trains (vision_exp/sweeps/precheck.py)."""
from __future__ import annotations

import json

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import CONF_DIR, compose, run_cli, tiny_vit_overrides
from vision_exp.errors import ConfigError
from vision_exp.experiment import check_buildable
from vision_exp.sweeps.precheck import job_overrides, jobs_by_configuration, refusals, spans


@pytest.mark.parametrize("overrides, message", [
    (["model=vit_v1", "model.patch_size=7"], "img_size 64 is not divisible by patch_size 7"),
    (["data.batch_size=0"], "data.batch_size=0 must be positive"),
    (["optimizer.lr=-1"], "optimizer.lr=-1 must be positive"),
    (["scheduler.warmup_epochs=-1"], "scheduler.warmup_epochs=-1 must not be negative"),
])
def test_what_each_job_is_checked_for_covers_the_model_optimizer_and_scheduler(overrides, message):
    check_buildable(compose(overrides[:-1]))  # the same without the bad value builds
    with pytest.raises(ConfigError, match=message):
        check_buildable(compose(overrides))


def test_the_jobs_are_those_of_hydras_basic_sweeper_in_its_order():
    """The preset's sweeper params and the command line's sweeps, expanded; `glob(*)` lists a group's options."""
    jobs = job_overrides({"model": "resnet_v1,vit_v1"}, ["seed=0,1", "trainer.epochs=2"])
    assert jobs == [["model=resnet_v1", "seed=0", "trainer.epochs=2"], ["model=resnet_v1", "seed=1", "trainer.epochs=2"],
                    ["model=vit_v1", "seed=0", "trainer.epochs=2"], ["model=vit_v1", "seed=1", "trainer.epochs=2"]]
    assert jobs_by_configuration(jobs) == {("model=resnet_v1", "trainer.epochs=2"): [0, 1],
                                           ("model=vit_v1", "trainer.epochs=2"): [2, 3]}
    forced = job_overrides(None, ["++seed=0,1", "trainer.epochs=2"])  # a seed set however the command writes it
    assert jobs_by_configuration(forced) == {("trainer.epochs=2",): [0, 1]}
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        globbed = job_overrides(None, ["model=glob(vit_*)"], GlobalHydra.instance().config_loader())
    assert globbed == [["model=vit_v1"], ["model=vit_v2"], ["model=vit_v3"]]


def test_a_bad_value_in_one_job_stops_the_sweep_before_any_job_trains(tiny_folder, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "model.patch_size=8,3,5", "seed=0,1",
                      f"hydra.sweep.dir={sweep}", f"hydra.run.dir={tmp_path / 'run'}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert f"a sweep ignores it: its jobs go into hydra.sweep.dir={sweep}" in output  # not where the user expects
    # numbered as Hydra numbers them, every seed of a configuration named
    assert "error: model: img_size 16 is not divisible by patch_size 3 (jobs 2-3)" in output
    assert "error: model: img_size 16 is not divisible by patch_size 5 (jobs 4-5)" in output and "patch_size 8" not in output
    assert "none of the sweep's 6 jobs was started" in output
    assert not sweep.exists()  # not even the empty folder


def test_a_swept_key_or_option_the_configs_lack_names_the_one_meant(tiny_folder, tmp_path):
    """Composed job by job (Hydra's first composition leaves swept values out), as a run names it: without the
    +model.patch_sise advice Hydra gives, or its list of a group's options over a dozen lines."""
    result = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "model.patch_sise=4,8",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert "error: model.patch_sise is not a setting (did you mean model.patch_size?) (every job)" in output
    assert "+model.patch_sise" not in output and not (tmp_path / "sweep").exists()
    result = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "trainr.epochz=1,2",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"])  # the section misspelt too
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "error: trainr.epochz is not a setting (did you mean trainer.epochs?) (every job)" in output
    result = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "optimizer=adamw,adamww",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert output.startswith("error: job 1 (") and output.count("error:") == 1, output
    assert ("optimizer=adamww): optimizer=adamww is not an option (did you mean adamw?): optimizer is one of adam, adamw, "
            "lamb, sgd, sgd_b256\n") in output
    assert not (tmp_path / "sweep").exists()


def test_one_mistake_shared_by_many_jobs_is_one_line(tiny_folder, tmp_path):
    result = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "model.mlp_ratio=1,2,4", "seed=0,1",
                      "data.batch_size=0", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert output.count("data.batch_size=0 must be positive") == 1, output
    assert "data.batch_size=0 must be positive (every job)" in output


def test_a_refused_rerun_keeps_what_the_sweep_folder_holds(tiny_folder, tmp_path):
    sweep = tmp_path / "sweep"
    first = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "seed=0", f"hydra.sweep.dir={sweep}"])
    assert first.returncode == 0, first.stdout + first.stderr
    held = sorted(path.relative_to(sweep) for path in sweep.rglob("*"))
    metrics = (sweep / "0" / "metrics.json").read_text()
    again = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "seed=0,1", "model.depth=0",
                     f"hydra.sweep.dir={sweep}"])
    assert again.returncode == 2 and "model: depth=0 must be a whole number, at least 1" in again.stderr, again.stderr
    assert sorted(path.relative_to(sweep) for path in sweep.rglob("*")) == held
    assert json.loads((sweep / "0" / "metrics.json").read_text()) == json.loads(metrics)
    # no job at all: multirun.yaml and results.md were rewritten with a command that ran nothing, exit 0
    record = {path: path.read_bytes() for path in sweep.rglob("*") if path.is_file()}
    empty = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "seed=range(0)", f"hydra.sweep.dir={sweep}"])
    assert empty.returncode == 2 and empty.stderr.strip() == (
        "error: the sweep has no jobs: a swept list of values is empty (e.g. seed=range(0)); give each swept setting "
        "one value or more"), empty.stderr
    assert {path: path.read_bytes() for path in sweep.rglob("*") if path.is_file()} == record


def test_a_mistake_names_every_job_it_is_in_and_a_single_job_with_its_overrides():
    assert spans([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8" and spans([4]) == "4"
    jobs = [["model.patch_size=8", "seed=0"], ["model.patch_size=8", "seed=1"], ["model.patch_size=3", "seed=0"],
            ["model.patch_size=3", "seed=1"], ["model.patch_size=5"]]
    lines = refusals(jobs, {"patch 3 does not divide": [2, 3], "patch 5 does not divide": [4]})
    assert lines == ["error: patch 3 does not divide (jobs 2-3)",
                     "error: job 4 (model.patch_size=5): patch 5 does not divide",
                     "none of the sweep's 5 jobs was started: fix the values above and run it again"]
    assert refusals(jobs, {"lr must be positive": [0, 1, 2, 3, 4]})[0] == "error: lr must be positive (every job)"



def test_every_jobs_seed_is_checked_and_an_unexpected_error_stops_the_sweep_too():
    """Jobs that differ by their seed are composed once: the others' seeds were never checked (seed=0,abc trained
    job 0, then failed). A check that raised something else was turned by Hydra into a warning, and every job ran."""
    from vision_exp.sweeps.precheck import failing_jobs

    jobs = [["seed=0"], ["seed=abc"], ["seed=-1"]]
    failing = failing_jobs(jobs, lambda number: compose(jobs[number]))
    assert failing == {"seed='abc' must be a whole number from 0 to 9223372036854775807": [1],
                       "seed=-1 must be a whole number from 0 to 9223372036854775807": [2]}

    def broken(number):
        raise IndexError("tuple index out of range")

    assert failing_jobs([["model=vit_v1"], ["model=resnet_v1"]], broken) == {"IndexError: tuple index out of range": [0, 1]}


def test_debug_fast_wins_over_the_presets_a_preset_sweep_appends():
    """A preset sweep appends its presets after the defaults list: their budgets overrode debug=fast, and a check of
    seconds ran thousands of epochs. Each job, as the pre-check and the notebook API compose it, is debug=fast's."""
    from hydra import compose as hydra_compose

    from vision_exp.api import _compose_run
    from vision_exp.sweeps.precheck import hydra_config_kept, sweep_job_config

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)), hydra_config_kept():
        primary = hydra_compose("train", ["experiment=cpu_resnet_vs_vit", "debug=fast"], return_hydra_config=True)
        job = sweep_job_config(primary, ["+experiment@_global_=cpu_vit_enhanced", "seed=0", "debug=fast"],
                               GlobalHydra.instance().config_loader())
    assert (job.trainer.train_samples, job.trainer.epochs, job.data.batch_size) == (None, 1, 32)
    assert job.model.patch_size == 4  # the preset itself still applies
    notebook = _compose_run(["+experiment@_global_=cpu_vit_enhanced", "debug=fast"])
    assert (notebook.trainer.train_samples, notebook.trainer.epochs, notebook.data.batch_size) == (None, 1, 32)
    mine = _compose_run(["debug=fast", "data.batch_size=8", "trainer.epochs=3"])  # the command line's own still win
    assert (mine.data.batch_size, mine.trainer.epochs, mine.data.max_train_per_class) == (8, 3, 16)


def test_a_sweep_whose_values_name_hydras_job_settings_is_checked_and_runs(tiny_folder, tmp_path):
    """`${hydra:job.num}` resolves only once a job's Hydra config is set: the pre-check sets each job's while it
    checks it, rather than refusing the sweep (or, before that, being switched off by the error)."""
    sweep = tmp_path / "sweep"
    args = ["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), f"data.cache_dir={tmp_path}/cache/${{hydra:job.num}}",
            "seed=0,1", f"hydra.sweep.dir={sweep}"]
    result = run_cli(args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["0", "1"]
    bad = run_cli([*args[:-1], "model.depth=0", f"hydra.sweep.dir={tmp_path / 'other'}"])
    assert bad.returncode == 2 and "model: depth=0 must be a whole number, at least 1 (every job)" in bad.stderr, bad.stderr
    # Each job is checked with its own number: mlp_ratio=${hydra:job.num} is 0 in job 0 only.
    per_job = run_cli(["-m", "model=vit_v1", *tiny_vit_overrides(tiny_folder), "model.pool=cls,avg",
                       "model.mlp_ratio=${hydra:job.num}", f"hydra.sweep.dir={tmp_path / 'per-job'}"])
    refusals = [line for line in per_job.stderr.splitlines() if line.startswith("error:")]
    assert per_job.returncode == 2 and len(refusals) == 1, per_job.stderr
    assert refusals[0].startswith("error: job 0 (") and "model.pool=cls" in refusals[0] and "mlp_ratio=0" in refusals[0]


def test_a_rerun_is_refused_for_each_job_whose_folder_holds_another_configuration(tmp_path):
    """Changed or reordered swept values point job numbers at other configurations' folders: each such job is
    named before any job starts; a folder of its own configuration (even one whose run split its batches to fit a
    smaller card), or one never trained in, is no conflict."""
    from omegaconf import OmegaConf

    from vision_exp.sweeps.precheck import folder_conflicts

    jobs = [["model=resnet_v1", "seed=0"], ["model=resnet_v1", "seed=1"], ["model=resnet_v2", "seed=0"],
            ["model=resnet_v2", "seed=1"]]
    for number, saved in ((1, ["model=resnet_v2", "seed=1"]), (2, [*jobs[2], "trainer.grad_accum_steps=2"])):
        (tmp_path / str(number)).mkdir()
        (tmp_path / str(number) / "config.yaml").write_text(OmegaConf.to_yaml(compose(saved), resolve=True))
    (tmp_path / "3").mkdir()  # made, but its job failed before it wrote config.yaml
    conflicts = folder_conflicts(jobs, lambda number: compose(jobs[number]), tmp_path)
    assert list(conflicts.values()) == [[1]]
    assert f"{tmp_path / '1'} holds a run of another configuration (model" in next(iter(conflicts))


def test_a_value_only_a_jobs_own_start_resolves_does_not_stop_the_sweep():
    """`${hydra:...}` in a job's values resolves only once that job runs: the pre-check must let the job go rather
    than refuse it for an interpolation it cannot resolve ahead."""
    from omegaconf.errors import InterpolationResolutionError

    from vision_exp.sweeps.precheck import failing_jobs

    def unresolved(number):
        raise InterpolationResolutionError("hydra:job.num is not set")

    assert failing_jobs([["seed=0"], ["seed=1"]], unresolved) == {}


def test_the_precheck_puts_back_hydras_config_it_set_for_each_job():
    """The pre-check makes each job's config Hydra's current one while it checks it; the sweep's own must be back
    afterwards, even when a check raised, or the launcher would compose jobs from the last one checked."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from vision_exp.sweeps.precheck import hydra_config_kept

    before = HydraConfig.instance().cfg
    with pytest.raises(RuntimeError), hydra_config_kept():
        HydraConfig.instance().cfg = OmegaConf.create({"hydra": {"job": {"num": 3}}})
        raise RuntimeError("a check failed")
    assert HydraConfig.instance().cfg is before


def test_the_slurm_launcher_on_a_cluster_node_is_let_through(tmp_path, monkeypatch):
    """Where srun is on the PATH (a SLURM login node) the launcher check stays silent; elsewhere it stops the sweep
    with status 2."""
    import shutil

    from omegaconf import OmegaConf

    from vision_exp.sweeps.precheck import CheckLauncher

    config = OmegaConf.create({"hydra": {"launcher": {"_target_": "hydra_plugins.hydra_submitit_launcher."
                                                                  "submitit_launcher.SlurmLauncher"},
                                         "sweep": {"dir": str(tmp_path / "sweep")}}})
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/srun" if name == "srun" else None)
    CheckLauncher().on_multirun_start(config)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as stopped:
        CheckLauncher().on_multirun_start(config)
    assert stopped.value.code == 2


def test_one_mistake_of_several_jobs_is_found_once_and_named_with_every_job_in_order():
    """A bad value shared by a configuration's seeds is checked once and stops all of them; job numbers gathered
    from several configurations come out in order and as runs."""
    from vision_exp.sweeps.precheck import failing_jobs

    jobs = [["data.batch_size=0", "seed=0"], ["data.batch_size=0", "seed=1"], ["seed=0"], ["data.batch_size=0", "seed=2"]]
    composed = []
    failing = failing_jobs(jobs, lambda number: composed.append(number) or compose(jobs[number]))
    assert composed == [0, 2]  # the first job of each configuration
    assert list(failing.values()) == [[0, 1, 3]] and "data.batch_size=0 must be positive" in next(iter(failing))
    assert refusals(jobs, {"seed=-1 is no seed": [3, 1, 2]})[0] == "error: seed=-1 is no seed (jobs 1-3)"


def test_a_key_of_the_swept_options_but_not_the_default_one_is_set_with_plus_plus(tiny_folder, tmp_path):
    """Hydra composes a sweep's config once with the group's default (the ResNet) before it chooses the swept
    options, and refuses model.depth there, advising a + that every job then refuses: the line says ++, which works."""
    data = [override for override in tiny_vit_overrides(tiny_folder) if not override.startswith("model.")]
    model = ["model.embed_dim=16", "model.depth=1", "model.num_heads=2"]
    refused = run_cli(["-m", "model=vit_v1,vit_v2", *model, *data, f"hydra.sweep.dir={tmp_path / 'refused'}"])
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == ("error: model.embed_dim is not a setting of the default model, which Hydra composes before the "
                              "sweep chooses model=vit_v1,vit_v2: write ++model.embed_dim=16 to set it in every job\n")
    misspelt = run_cli(["-m", "model=vit_v1,vit_v2", "model.dept=1", *data, f"hydra.sweep.dir={tmp_path / 'refused'}"])
    assert misspelt.stderr == "error: model.dept is not a setting of any model option (did you mean model.depth?)\n"
    assert not (tmp_path / "refused").exists()
    sweep = tmp_path / "sweep"
    done = run_cli(["-m", "model=vit_v1,vit_v2", *[f"++{override}" for override in model], *data, f"hydra.sweep.dir={sweep}"])
    assert done.returncode == 0, done.stdout + done.stderr
    for job, block in enumerate(["Block", "Blockv2"]):
        config = OmegaConf.load(sweep / str(job) / "config.yaml")
        status = json.loads((sweep / str(job) / "metrics.json").read_text())["status"]
        assert (config.model.block, config.model.depth, config.model.embed_dim, status) == (block, 1, 16, "completed")
