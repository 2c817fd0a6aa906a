"""The manual's commands keep working: every `python -m vision_exp.<entry>` and `vx-<entry>` command in
README.md and docs/*.md composes, and every job of a sweep passes the checks a run makes before it
builds anything. A renamed key, group option or preset fails here instead of in a user's terminal."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import CONF_DIR, REPO
from vision_exp.experiment import check_buildable
from vision_exp.sweeps.precheck import job_overrides, jobs_by_configuration

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ENTRY = re.compile(r"(?:python -m vision_exp\.|vx-)(train|evaluate|predict)\b")
PLACEHOLDER = re.compile(r"<[^<>]*>")
FLAGS = {"-m", "--multirun"}


def bash_lines(text: str):
    """The lines of ```bash blocks, continuation lines joined."""
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        yield from block.replace("\\\n", " ").splitlines()


def documented_commands(path: Path) -> list[tuple[str, str, list[str]]]:
    """(entry, the command as written, its arguments with placeholders replaced) for each command."""
    text = path.read_text()
    candidates = [line.strip() for line in bash_lines(text)] + re.findall(r"`([^`\n]+)`", text)
    commands = []
    for written in candidates:
        match = ENTRY.match(written)
        if match is None or "<TAB>" in written or re.search(r"(^|\s)<", written):
            continue  # a tab-completion demo or a bare <overrides>: an illustration, not a command
        words = shlex.split(PLACEHOLDER.sub("PLACEHOLDER", written[match.end():]), comments=True)
        commands.append((match.group(1), written, [word for word in words if word != "..."]))
    return commands


def unique(commands):
    """Each command once, under the first document that has it (sweeps.md repeats the README's)."""
    seen = {}
    for document, entry, written, arguments in commands:
        seen.setdefault((entry, tuple(arguments)), (document, entry, written, arguments))
    return list(seen.values())


COMMANDS = unique((path.name, *command) for path in DOCUMENTS for command in documented_commands(path))


def test_the_documents_hold_the_study_commands():
    """The extraction finds what the README promises: the presets, the sweeps, evaluate and predict."""
    written = {command for _, _, command, _ in COMMANDS}
    for expected in ("python -m vision_exp.train -m experiment=e2_vit 'enhancement=glob(*)' seed=0,1,2",
                     "python -m vision_exp.train -m experiment=ablation_resnet_blocks",
                     "python -m vision_exp.train experiment=e2_resnet"):
        assert any(command.startswith(expected) for command in written), expected
    assert {entry for _, entry, _, _ in COMMANDS} == {"train", "evaluate", "predict"}


def sweep_jobs(arguments: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of the jobs Hydra's basic sweeper would launch (one job for a single run), seeds aside."""
    if not multirun:
        return [arguments]
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    fixed = [override.input_line for override in parser.parse_overrides(arguments) if not override.is_sweep_override()]
    sweeper_params = compose("train", fixed, return_hydra_config=True).hydra.sweeper.params
    jobs = job_overrides(sweeper_params, arguments, loader)
    return [jobs[numbers[0]] for numbers in jobs_by_configuration(jobs).values()]


@pytest.mark.parametrize("document, entry, written, arguments", COMMANDS,
                         ids=[f"{document}: {written.split('#')[0].strip()}" for document, _, written, _ in COMMANDS])
def test_a_documented_command_composes_and_passes_the_checks(document, entry, written, arguments, tmp_path):
    flags = [word for word in arguments if word.startswith("-")]
    assert set(flags) <= FLAGS | {"--cfg", "job", "--help"}, f"{written}: unexpected flags {flags}"
    if "--help" in flags:
        return
    overrides = [word for word in arguments if not word.startswith("-") and word != "job"]
    assert all("=" in word for word in overrides), f"{written}: every argument is an override"
    teacher = tmp_path / "best.pt"  # a teacher's checkpoint as the placeholder stands for: the checks need the file
    teacher.touch()
    overrides = [f"loss.distillation.teacher={teacher}" if word.startswith("loss.distillation.teacher=")
                 and "PLACEHOLDER" in word else word for word in overrides]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="docs"):
        jobs = sweep_jobs(overrides, multirun=bool(FLAGS & set(flags)))
        assert jobs, written
        for job in jobs:
            cfg = compose(entry, job)
            if entry == "train":
                check_buildable(cfg)
