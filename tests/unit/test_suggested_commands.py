"""Every command lapidar tells a user to run must work: its subcommand, flags, choices and pip extras exist.

The messages are read from the source (every string literal, f-string parts included), so a renamed flag or a
dropped extra fails here rather than in front of a user who followed the advice.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import typer.main

from lapidar.cli import app

SRC = Path(__file__).resolve().parents[2] / "src" / "lapidar"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
HOLE = "\x00"  # stands for an f-string placeholder


def _strings() -> list[tuple[str, int, str]]:
    """(file, line, text) of every string literal in lapidar's source; f-string placeholders become HOLE."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(str(v.value) if isinstance(v, ast.Constant) else HOLE for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            out.append((str(path.relative_to(SRC)), node.lineno, text))
    return out


STRINGS = _strings()
ROOT = typer.main.get_command(app)


# typer ships its own copy of click, so commands and parameter types are recognised by shape, not by class.
def _command(words: list[str]) -> tuple[Any, list[str]] | None:
    """The click command that `lapidar WORDS...` names, and the words after it; None if the first is no command."""
    cmd = ROOT
    rest = list(words)
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
        cmd = cmd.commands[rest.pop(0)]
    return None if cmd is ROOT else (cmd, rest)


def _options(cmd: Any) -> dict[str, Any]:
    return {o: p for p in cmd.params for o in [*p.opts, *p.secondary_opts] if o.startswith("--")}


def _all_commands(cmd: Any = ROOT) -> list[Any]:
    if hasattr(cmd, "commands"):
        return [c for sub in cmd.commands.values() for c in _all_commands(sub)]
    return [cmd]


ALL_FLAGS = {flag: p for c in _all_commands() for flag, p in _options(c).items()}


def _choices() -> dict[str, tuple[str, ...]]:
    """`--flag -> its valid values` for every config flag whose field is a Literal (the schema is the one source)."""
    from lapidar.config import TrainConfig
    from lapidar.config.options import flag_name, value_type

    out = {}
    for name, info in TrainConfig.model_fields.items():
        kind = value_type(info)
        if get_origin(kind) is Literal:
            out[flag_name(name)] = tuple(str(v) for v in get_args(kind))
    from lapidar.methods import METHODS  # --method is checked against its registry

    out["--method"] = tuple(METHODS)
    return out


CHOICES = _choices()


def _check_value(flag: str, value: str | None, where: str) -> None:
    if value is None or HOLE in value or value.isupper() or flag not in CHOICES:
        return  # a placeholder (FILE, {name}) or a free value
    assert value in CHOICES[flag], f"{where}: {flag} {value}: not one of {list(CHOICES[flag])}"


def test_choices_are_read_from_the_schema():
    assert "qlora" in CHOICES["--method"] and "q-galore" in CHOICES["--optimizer"]


SUGGESTED = [
    (f"{f}:{line}", m.group(1))
    for f, line, text in STRINGS
    for m in re.finditer(r"`lapidar ([^`]+)`", text)  # commands are written in backticks
]


def test_the_scan_finds_the_suggestions():
    # Guards the test itself: if the source stopped writing commands in backticks, nothing would be checked.
    assert len(SUGGESTED) > 20
    assert any("data clean" in cmd for _, cmd in SUGGESTED)


@pytest.mark.parametrize(("where", "command"), SUGGESTED, ids=[w for w, _ in SUGGESTED])
def test_suggested_lapidar_command_exists_with_its_flags(where, command):
    words = command.replace("|", " ").split()
    found = _command(words)
    assert found is not None, f"{where}: `lapidar {command}`: no such command"
    cmd, rest = found
    options = _options(cmd)
    for i, word in enumerate(rest):
        if not word.startswith("--") or HOLE in word:
            continue
        flag, _, inline = word.partition("=")
        assert flag in options, f"{where}: `lapidar {command}`: {cmd.name} has no option {flag}"
        value = inline or (rest[i + 1] if i + 1 < len(rest) and not rest[i + 1].startswith("-") else None)
        _check_value(flag, value, where)


# A flag written in any message ("use --method galore", "raise --max-length") must be a flag of some command,
# and a choice written after it must be valid. Flags of other programs that messages quote are listed here.
FOREIGN_FLAGS = {
    "--local-dir",  # huggingface-cli download
    "--logdir",  # tensorboard
    "--check",  # python -m lapidar.config
    "--nproc-per-node",  # torchrun
    "--nnodes",
    "--node-rank",
    "--master-addr",
    "--master-port",
    "--served-model-name",  # vllm serve (lapidar serve --engine vllm)
    "--enable-lora",
    "--lora-modules",
    "--max-lora-rank",
    "--head",  # ray start
}
# The modules that describe how flags are generated from field names (`--x` / `--no-x`), not real flags.
FLAG_SCHEME = ("config/options.py", "config/reference.py")
FLAG_MENTIONS = [
    (f"{f}:{line}", m.group(1), m.group(2))
    for f, line, text in STRINGS
    if not f.startswith(FLAG_SCHEME)
    for m in re.finditer(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]([a-z0-9][\w.-]*))?", text)
]


def test_every_flag_a_message_names_exists():
    assert len(FLAG_MENTIONS) > 30
    bad = [f"{w}: {flag}" for w, flag, _ in FLAG_MENTIONS if flag not in ALL_FLAGS and flag not in FOREIGN_FLAGS]
    assert not bad, "messages name flags no command has:\n" + "\n".join(bad)


def test_every_choice_a_message_names_is_valid():
    for where, flag, value in FLAG_MENTIONS:
        if flag in ALL_FLAGS and value:
            _check_value(flag, value, where)


def _extras() -> dict[str, list[str]]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]


def _distributions(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The distributions `pip install 'lapidar[EXTRA]'` installs (other extras followed)."""
    out: set[str] = set()
    for req in extras[extra]:
        name = re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0]
        if name == "lapidar":
            for sub in re.search(r"\[(.*)\]", req).group(1).split(","):  # type: ignore[union-attr]
                out |= _distributions(sub.strip(), extras)
        else:
            out.add(name.lower().replace("_", "-"))
    return out


# Import name -> the distributions that provide it, for packages this environment does not have installed
# (mlflow is not part of lapidar[all]); installed ones are read from their metadata.
NOT_INSTALLED = {"mlflow": {"mlflow", "mlflow-skinny"}, "wandb": {"wandb"}}


def _provides(import_name: str) -> set[str]:
    """The distributions that provide top-level module `import_name` (e.g. mlflow -> mlflow-skinny)."""
    installed = {d.lower().replace("_", "-") for d in md.packages_distributions().get(import_name, [])}
    return installed or NOT_INSTALLED.get(import_name, set())


PIP_HINTS = [
    (f"{f}:{line}", text) for f, line, text in STRINGS if "pip install" in text and not text.lstrip().startswith("#")
]


@pytest.mark.parametrize(("where", "text"), PIP_HINTS, ids=[w for w, _ in PIP_HINTS])
def test_pip_install_hint_names_a_real_extra_that_installs_the_package(where, text):
    extras = _extras()
    for extra in re.findall(r"lapidar\[([a-z0-9-]+)\]", text):
        assert extra in extras, f"{where}: 'lapidar[{extra}]' is no extra of pyproject.toml ({sorted(extras)})"
        # "needs the X package: pip install 'lapidar[E]'": E must install the distribution that provides X.
        needed = re.search(r"needs the ([\w.-]+) package", text)
        if needed and HOLE not in needed.group(1):
            provided = _provides(needed.group(1))
            assert provided & _distributions(extra, extras), f"{where}: lapidar[{extra}] does not install {provided}"


# The helpers that build "needs the PACKAGE package: pip install 'lapidar[EXTRA]'" from arguments: every call's
# literal (package, extra) pair must hold the same promise.
def _needs_calls() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_needs", "_import")
                and len(node.args) >= 2
                and isinstance(package := node.args[0], ast.Constant)
                and isinstance(extra := node.args[1], ast.Constant)
            ):
                out.append((f"{path.relative_to(SRC)}:{node.lineno}", str(package.value), str(extra.value)))
    return out


NEEDS = _needs_calls()


def test_needs_calls_are_found():
    assert len(NEEDS) >= 4


@pytest.mark.parametrize(("where", "package", "extra"), NEEDS, ids=[w for w, _, _ in NEEDS])
def test_needs_call_names_an_extra_that_installs_the_package(where, package, extra):
    extras = _extras()
    assert extra in extras, f"{where}: no extra {extra!r}"
    provided = _provides(package)
    assert provided & _distributions(extra, extras), f"{where}: lapidar[{extra}] does not install {package}"


def test_optimizer_package_table_matches_the_extras():
    from lapidar.training.optim import _PACKAGES

    extras = _extras()
    for name, needs in _PACKAGES.items():
        for package, extra in needs:
            provided = _provides(package)
            assert provided & _distributions(extra, extras), f"optimizer {name}: lapidar[{extra}] lacks {package}"


# The memory check's advice is built at run time: every change it can suggest must be flags of the command that
# prints it (`lapidar train` refuses a run with the multi_gpu=False advice; `lapidar estimate` prints all of it).
def _advice_flags(multi_gpu: bool) -> set[str]:
    from lapidar.models.presets import get_preset
    from lapidar.training.estimate import _candidates
    from lapidar.training.memory import ModelShape, Plan

    shape = ModelShape.from_preset(get_preset("qwen2.5-7b-instruct"))
    plans = [
        Plan(shape=shape, method=method, device=device, batch_size=8, seq_len=4096)
        for method in ("lora", "full", "galore", "freeze")
        for device in ("cuda", "cpu")
    ]
    changes = [change for plan in plans for _, change, _ in _candidates(plan, multi_gpu)]
    assert len(changes) > 10
    return {word.split("=")[0] for change in changes for word in change.split() if word.startswith("--")}


@pytest.mark.parametrize(("command", "multi_gpu"), [("train", False), ("estimate", True)])
def test_memory_advice_uses_flags_of_the_command_that_prints_it(command, multi_gpu):
    flags = _advice_flags(multi_gpu)
    options = _options(ROOT.commands[command])  # type: ignore[attr-defined]
    assert flags and flags <= set(options), f"lapidar {command} lacks {sorted(flags - set(options))}"
