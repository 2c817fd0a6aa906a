"""Several sweep folders summarized as one: a sweep and the one that ran more seeds of it make one table, its
configurations pooled over both sweeps' seeds (n, means and the paired interval over all of them), written into a
folder of its own; what the sweeps differ in is an axis, never averaged; bad input is one message."""
import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from test_sweeps import write_job
from vision_exp import summarize
from vision_exp.sweeps import load_sweep, load_sweeps, summarize_sweeps
from vision_exp.sweeps.summary import SweepError, results_markdown

T_975_DF4 = 2.7764451  # the 0.975 quantile of Student's t with 4 degrees of freedom (a printed table)

# val_acc by model and seed: seeds 0-2 ran in the first sweep, 3-4 in the second
ACCURACY = {"resnet_v1": (70.0, 73.5, 71.0, 72.25, 69.5), "resnet_v2": (72.5, 74.0, 74.5, 73.0, 72.75)}


def command_sweep(folder: Path, task: list, jobs: list) -> Path:
    """A sweep folder whose multirun.yaml records `task` as its command line; jobs are (overrides, val_acc or
    an error string)."""
    folder.mkdir(parents=True)
    (folder / "multirun.yaml").write_text(json.dumps({"name": "ablation", "hydra": {"overrides": {
        "hydra": ["hydra.mode=MULTIRUN"], "task": task}}}))
    for number, (overrides, value) in enumerate(jobs):
        if isinstance(value, str):
            write_job(folder, number, overrides, error=value)
        else:
            write_job(folder, number, overrides, value)
    return folder


def seeds_sweep(folder: Path, seeds: range, extra=(), values=ACCURACY) -> Path:
    """`model=resnet_v1,resnet_v2 seed=<seeds>`, model-major as Hydra numbers the jobs."""
    jobs = [([*extra, f"model={model}", f"seed={seed}"], values[model][seed]) for model in values for seed in seeds]
    task = [*extra, "model=resnet_v1,resnet_v2", "seed=" + ",".join(map(str, seeds))]
    return command_sweep(folder, task, jobs)


def two_sweeps(tmp_path: Path) -> tuple:
    first = seeds_sweep(tmp_path / "ablation" / "multirun_first", range(0, 3))
    more = seeds_sweep(tmp_path / "ablation" / "multirun_more_seeds", range(3, 5))
    return first, more


def files(folder: Path) -> dict:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def table_rows(text: str) -> dict:
    return {line.split(" | ")[0].removeprefix("| "): line for line in text.splitlines() if line.startswith("| ")}


def test_seeds_of_two_sweeps_make_one_configuration_with_the_paired_interval_over_all(tmp_path):
    first, more = two_sweeps(tmp_path)
    output = tmp_path / "merged"
    summary = summarize_sweeps([first, more], output)
    v1, v2 = summary.configurations
    assert [c.label for c in summary.configurations] == ["model=resnet_v1", "model=resnet_v2"]
    assert summary.baseline is v1 and list(summary.axes) == ["model"]
    assert [len(c.values("val_acc")) for c in (v1, v2)] == [5, 5]
    assert v1.mean("val_acc") == pytest.approx(statistics.mean(ACCURACY["resnet_v1"]))
    assert v2.std("val_acc") == pytest.approx(statistics.stdev(ACCURACY["resnet_v2"]))
    gains = [b - a for a, b in zip(ACCURACY["resnet_v1"], ACCURACY["resnet_v2"])]  # seed by seed, both sweeps
    half = T_975_DF4 * statistics.stdev(gains) / math.sqrt(5)
    difference = summary.difference(v2)
    assert difference.paired and difference.df == 4
    assert (difference.estimate, difference.low, difference.high) == (
        pytest.approx(statistics.mean(gains)), pytest.approx(statistics.mean(gains) - half, abs=1e-6),
        pytest.approx(statistics.mean(gains) + half, abs=1e-6))
    rows = table_rows((output / "results.md").read_text())
    mean, std = statistics.mean(ACCURACY["resnet_v2"]), statistics.stdev(ACCURACY["resnet_v2"])
    gain = statistics.mean(gains)
    assert (f"| 5 | {mean:.2f} ± {std:.2f} | {gain:+.2f} [{gain - half:+.2f}, {gain + half:+.2f}] |"
            in rows["model=resnet_v2"])
    assert "| 5 |" in rows["**model=resnet_v1** (baseline)"]


def test_results_csv_names_each_job_by_its_sweep_and_links_its_folder(tmp_path):
    first, more = two_sweeps(tmp_path)
    output = tmp_path / "write-up" / "merged"
    summarize_sweeps([first, more], output)
    rows = list(csv.DictReader((output / "results.csv").open()))
    assert [row["job"] for row in rows] == [f"multirun_first/{n}" for n in range(6)] + [f"multirun_more_seeds/{n}" for n in range(4)]
    assert [row["seed"] for row in rows] == ["0", "1", "2"] * 2 + ["3", "4"] * 2
    for row in rows:
        sweep, number = row["job"].split("/")
        assert (output / row["run_dir"]).resolve() == (tmp_path / "ablation" / sweep / number).resolve()
        assert float(row["val_acc"]) == json.loads((output / row["run_dir"] / "metrics.json").read_text())["val_acc"]


def test_sweep_folders_of_one_name_are_told_apart_and_a_failed_job_is_named_by_its_sweep(tmp_path):
    first = seeds_sweep(tmp_path / "a" / "multirun", range(0, 2))
    more = command_sweep(tmp_path / "b" / "multirun", ["model=resnet_v1,resnet_v2", "seed=2"],
                         [(["model=resnet_v1", "seed=2"], 71.0), (["model=resnet_v2", "seed=2"], "out of memory")])
    summary = summarize_sweeps([first, more], tmp_path / "merged")
    assert [job.name for job in summary.unsuccessful] == ["b/multirun/1"]
    text = (tmp_path / "merged" / "results.md").read_text()
    assert "| b/multirun/1 | model=resnet_v2 | 2 | failed | out of memory |" in text
    assert "| 2 (+1 not completed) |" in table_rows(text)["model=resnet_v2"]


def test_vx_summarize_writes_into_the_output_folder_and_leaves_the_sweeps_untouched(tmp_path, capsys):
    first, more = two_sweeps(tmp_path)
    before = {**files(first), **files(more)}
    output = tmp_path / "merged"
    assert summarize.main([str(first), str(more), "--output", str(output)]) == 0
    assert capsys.readouterr().out.startswith(f"{output}: 2 sweeps, 10 jobs (10 completed), 2 configurations")
    assert {**files(first), **files(more)} == before
    assert sorted(path.name for path in output.iterdir()) == ["results.csv", "results.md", "val_acc_bars.png",
                                                              "val_acc_curves.png"]
    for png in ("val_acc_bars.png", "val_acc_curves.png"):
        assert (output / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (output / "results.md").read_text()
    for sweep, seeds in ((first, "0,1,2"), (more, "3,4")):  # each sweep's folder, relative, and command
        assert f"`{sweep.name}` (`../ablation/{sweep.name}`, " in text
        assert f"python -m vision_exp.train -m model=resnet_v1,resnet_v2 seed={seeds}" in text
    assert "Baseline: **model=resnet_v1**" in text
    assert summarize.main([str(more), str(first), "--output", str(output), "--baseline", "model=resnet_v2"]) == 0
    assert "Baseline: **model=resnet_v2** (chosen with --baseline)" in (output / "results.md").read_text()
    assert {**files(first), **files(more)} == before


def test_the_default_baseline_is_the_first_sweeps_first_job(tmp_path):
    """Given in the other order, the sweep of more seeds comes first: its first job's configuration is the
    baseline, and its jobs come first."""
    first = seeds_sweep(tmp_path / "one", range(0, 2))
    other = seeds_sweep(tmp_path / "two", range(2, 4), values={"resnet_v2": ACCURACY["resnet_v2"],
                                                               "resnet_v1": ACCURACY["resnet_v1"]})
    summary = load_sweeps([other, first], tmp_path / "merged")
    assert summary.baseline.label == "model=resnet_v2" and summary.jobs[0].name == "two/0"
    assert [len(c.values("val_acc")) for c in summary.configurations] == [4, 4]


def test_one_sweep_folder_writes_into_itself_or_into_the_output_folder(tmp_path, capsys):
    first, _ = two_sweeps(tmp_path)
    before = files(first)
    output = tmp_path / "elsewhere"
    assert summarize.main([str(first), "--output", str(output)]) == 0  # a read-only sweep (a Kaggle input)
    assert files(first) == before
    rows = list(csv.DictReader((output / "results.csv").open()))
    assert [row["job"] for row in rows] == [str(n) for n in range(6)]
    assert all((output / row["run_dir"]).resolve() == (first / row["job"]).resolve() for row in rows)
    assert (output / "results.md").read_text().startswith(f"# Sweep `ablation`: {first.name}\n")
    assert summarize.main([str(first)]) == 0
    assert [row["run_dir"] for row in csv.DictReader((first / "results.csv").open())] == [str(n) for n in range(6)]
    assert load_sweeps(str(first)).sweep_dir == first == load_sweep(first).sweep_dir
    assert results_markdown(load_sweeps([first])) == results_markdown(load_sweep(first))


@pytest.mark.parametrize("case", ["no output", "twice", "twice, spelt otherwise", "not a sweep", "missing",
                                  "output is a job folder", "output in a job folder", "output is an input",
                                  "output is another sweep"])
def test_bad_input_is_one_message_and_status_2_and_writes_nothing(tmp_path, capsys, case):
    first, more = two_sweeps(tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    other = seeds_sweep(tmp_path / "other", range(0, 1))
    before = {**files(first), **files(more), **files(other)}
    output = str(tmp_path / "merged")
    argv, phrase = {
        "no output": ([str(first), str(more)], "2 sweep folders make one summary in a folder of its own: name it with --output"),
        "twice": ([str(first), str(more), str(first), "--output", output], f"{first} is given twice:"),
        "twice, spelt otherwise": ([str(first), f"{first.parent}/../ablation/{first.name}/", "--output", output],
                                   "is given twice (also as"),
        "not a sweep": ([str(first), str(plain), "--output", output], f"{plain} is not a sweep folder: it has no multirun.yaml"),
        "missing": ([str(first), str(tmp_path / "nowhere"), "--output", output], "is not a sweep folder: it does not exist"),
        "output is a job folder": ([str(first), str(more), "--output", str(more / "1")], "is in the job folder"),
        "output in a job folder": ([str(first), str(more), "--output", str(first / "0" / "merged")], "is in the job folder"),
        "output is an input": ([str(first), str(more), "--output", str(first)], "is a sweep folder: its own results.md"),
        "output is another sweep": ([str(first), str(more), "--output", str(other)], "is a sweep folder: its own results.md"),
    }[case]
    assert summarize.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert phrase in captured.err and "Traceback" not in captured.err
    assert {**files(first), **files(more), **files(other)} == before
    assert not Path(output).exists() and not (first / "0" / "merged").exists()


def test_the_python_api_refuses_several_sweeps_without_an_output_folder(tmp_path):
    first, more = two_sweeps(tmp_path)
    with pytest.raises(SweepError, match="--output <folder> \\(output_dir= in Python\\)"):
        load_sweeps([first, more])
    with pytest.raises(SweepError, match="given twice"):
        load_sweeps([first, first], tmp_path / "merged")
    with pytest.raises(SweepError, match="no sweep folder given"):
        load_sweeps([], tmp_path / "merged")


@pytest.mark.parametrize("second_value, label", [("trainer.epochs=20", "trainer.epochs=20"), (None, "trainer.epochs=(default)")])
def test_an_override_common_to_each_sweep_but_not_to_both_becomes_an_axis(tmp_path, second_value, label):
    """The first sweep ran trainer.epochs=10, the second 20 (or the preset's default): their seeds are other
    experiments, never averaged together; the comparison of the two is Welch's (other seeds)."""
    first = seeds_sweep(tmp_path / "ablation" / "epochs10", range(0, 3), extra=["trainer.epochs=10"])
    more = seeds_sweep(tmp_path / "ablation" / "epochs20", range(3, 5), extra=[second_value] if second_value else [])
    summary = summarize_sweeps([first, more], tmp_path / "merged")
    assert list(summary.axes) == ["trainer.epochs", "model"] and summary.set_apart == ["trainer.epochs"]
    assert [(c.label, len(c.values("val_acc"))) for c in summary.configurations] == [
        ("trainer.epochs=10 model=resnet_v1", 3), ("trainer.epochs=10 model=resnet_v2", 3),
        (f"{label} model=resnet_v1", 2), (f"{label} model=resnet_v2", 2)]
    assert summary.baseline.label == "trainer.epochs=10 model=resnet_v1" and summary.common == []
    longer = summary.configurations[2]
    assert not summary.difference(longer).paired
    assert longer.mean("val_acc") == pytest.approx(statistics.mean(ACCURACY["resnet_v1"][3:]))
    text = (tmp_path / "merged" / "results.md").read_text()
    assert "Each sweep ran one value of `trainer.epochs`, another in another sweep: a swept axis here" in text
    assert "(Welch: other seeds)" in table_rows(text)[f"{label} model=resnet_v1"]


def test_the_same_seeds_in_both_sweeps_are_no_pairs(tmp_path):
    """Seeds 0-2 run again in a second sweep: a seed twice in one configuration makes no pairs, so Welch's."""
    first = seeds_sweep(tmp_path / "a" / "multirun", range(0, 3))
    again = seeds_sweep(tmp_path / "b" / "multirun", range(0, 3), values={
        model: tuple(v + 1.0 for v in values) for model, values in ACCURACY.items()})
    summary = load_sweeps([first, again], tmp_path / "merged")
    v1, v2 = summary.configurations
    assert len(v1.values("val_acc")) == 6
    assert not summary.difference(v2).paired


def test_a_configuration_run_with_other_settings_in_another_sweep_is_flagged(tmp_path, capsys):
    """The same overrides, but the preset changed between the sweeps (config.yaml says trainer.epochs 10, then
    20): the table cannot tell, so results.md and the command say so."""
    first, more = two_sweeps(tmp_path)
    for sweep, epochs in ((first, 10), (more, 20)):
        for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
            seed = json.loads((job / "overrides.json").read_text())[-1].split("=")[1]
            (job / "config.yaml").write_text(f"seed: {seed}\ntrainer:\n  epochs: {epochs}\n  grad_accum_steps: {epochs // 10}\n"
                                             f"  device: cuda:{epochs // 10}\n")
    assert summarize.main([str(first), str(more), "--output", str(tmp_path / "merged")]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [f"warning: model=resnet_v{v}: job multirun_more_seeds/{2 * (v - 1)} ran with other settings than "
                        f"job multirun_first/{3 * (v - 1)} (trainer.epochs: 10 -> 20)" for v in (1, 2)]
    text = (tmp_path / "merged" / "results.md").read_text()
    assert "**Caution**: jobs of one configuration ran with other settings in another sweep" in text
    assert "(trainer.epochs: 10 -> 20)" in text
    for sweep in (first, more):  # the seeds differ, and where or how the jobs ran: no caution
        for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
            text = (job / "config.yaml").read_text()
            (job / "config.yaml").write_text(text.replace("epochs: 20", "epochs: 10"))
    assert load_sweeps([first, more], tmp_path / "merged").cautions == []


def test_a_sweep_folder_named_as_its_own_output_folder_writes_into_itself(tmp_path, capsys):
    """`vx-summarize <sweep> --output <sweep>` (a script that always passes --output) asks for the sweep's own
    results: it must write them there, not refuse the folder as another sweep's."""
    first, _ = two_sweeps(tmp_path)
    assert summarize.main([str(first), "--output", f"{first.parent}/../ablation/{first.name}/"]) == 0
    assert capsys.readouterr().err == ""
    assert [row["job"] for row in csv.DictReader((first / "results.csv").open())] == [str(n) for n in range(6)]
    assert load_sweeps([first], first).sweep_dir == first


def test_a_job_folder_reached_from_two_sweep_folders_is_refused(tmp_path):
    """A sweep folder holding a link to another's job (a copy made with links) would count that job's seed twice
    in one configuration, narrowing its interval with a repeat: refused, naming both paths."""
    first, more = two_sweeps(tmp_path)
    (more / "7").symlink_to(first / "1", target_is_directory=True)
    with pytest.raises(SweepError, match=f"the job folder {more / '7'} is {first / '1'} too"):
        load_sweeps([first, more], tmp_path / "merged")


def test_only_jobs_of_one_configuration_in_different_sweeps_are_compared_for_other_settings(tmp_path):
    """The caution is about sweeps: within one sweep the resume check already compared the jobs, and the jobs of
    unknown overrides (failed before writing overrides.json) are no configuration whose settings should agree."""
    first, more = two_sweeps(tmp_path)
    for sweep in (first, more):
        for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
            (job / "config.yaml").write_text("trainer:\n  epochs: 10\n")
    (first / "1" / "config.yaml").write_text("trainer:\n  epochs: 11\n")  # within the first sweep
    for sweep, epochs in ((first, 30), (more, 40)):
        job = sweep / "9"
        job.mkdir()
        (job / "metrics.json").write_text(json.dumps({"status": "failed", "error": "no space left on device"}))
        (job / "config.yaml").write_text(f"trainer:\n  epochs: {epochs}\n")
    summary = load_sweeps([first, more], tmp_path / "merged")
    assert summary.configurations[-1].label == "(unknown: no overrides.json)" and len(summary.configurations[-1].jobs) == 2
    assert summary.cautions == []
