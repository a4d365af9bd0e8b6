"""Every command the README and docs/ give is run or parsed by the real program, every page is
reachable from the README and every relative link resolves."""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import subprocess
import sys
from typing import Any

import pytest
import yaml

from sidecar.cli import build_parser, main
from tests import docs

ROOT = docs.ROOT


def _blocks() -> list[str]:
    """Each line of the pages' bash blocks (continuations joined, comments and ``&&`` chains split)."""
    out: list[str] = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", docs.text(), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out += [part.strip() for part in line.split("&&")]
    return sorted(set(out))


def _spans() -> list[str]:
    """Inline code spans that name a command of this project (usage: ``[--opt X]`` parts dropped)."""
    found = re.findall(r"`((?:rerank-sidecar |python bench/|bash bench/)[^`]*)`", docs.text())
    return sorted({re.sub(r"\s*\[[^\]]*\]", "", s).strip() for s in found})


COMMANDS = sorted(set(_blocks()) | set(_spans()))


def _words(command: str) -> list[str]:
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value before the command
        words = words[1:]
    return words


def _is(prefix: str) -> list[str]:
    return [c for c in COMMANDS if _words(c)[:1] == [prefix]]


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]  # type: ignore[no-any-return]


@pytest.mark.parametrize("command", [c for c in _spans() if c.startswith("rerank-sidecar ")])
def test_each_rerank_sidecar_command_named_in_the_text_has_its_options(command: str) -> None:
    words = _words(command)
    if words[1].startswith("-"):
        assert words[1] in ("--version", "--help"), command
        return
    known = {o for a in _subparser(words[1])._actions for o in a.option_strings}
    for option in [w.split("=")[0] for w in words[2:] if w.startswith("--")]:
        assert option in known, f"{command!r}: rerank-sidecar {words[1]} has no {option}"


@pytest.mark.parametrize("command", [c for c in _blocks() if _words(c)[:1] == ["rerank-sidecar"]])
def test_each_rerank_sidecar_command_parses(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = _words(command)[1:]
    if args in (["--version"], ["--help"]):
        return
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as e:
        pytest.fail(f"{command!r}: the CLI refuses it: {capsys.readouterr().err.strip()} ({e})")
    if parsed.command == "check-config" and (ROOT / parsed.file).is_file():
        assert main(args) == 0, capsys.readouterr().err  # the documented file passes


BENCH = sorted({_words(c)[1] for c in _is("python") if _words(c)[1:2] and _words(c)[1].startswith("bench/")})


@pytest.mark.parametrize("script", BENCH)
def test_each_benchmark_command_is_a_script_that_takes_its_options(script: str) -> None:
    path = ROOT / script
    assert path.is_file(), script
    helped = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert helped.returncode == 0, helped.stderr[-2000:]
    for command in [c for c in COMMANDS if script in c]:
        for option in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", command):
            assert option in helped.stdout, f"{command!r}: {script} has no {option}"


def test_each_shell_script_and_compose_command_names_what_exists() -> None:
    for command in _is("bash"):
        script = ROOT / _words(command)[1]
        assert script.is_file() and script.stat().st_mode & 0o111, command
    profiles = set()
    for file in ROOT.glob("docker-compose*.yml"):
        for service in yaml.safe_load(file.read_text())["services"].values():
            profiles |= set(service.get("profiles", []))
    for command in [c for c in _is("docker") if _words(c)[1:2] == ["compose"]]:
        words = _words(command)
        if "-f" in words:
            assert (ROOT / words[words.index("-f") + 1]).is_file(), command
        if "--profile" in words:
            assert words[words.index("--profile") + 1] in profiles, command
        if words[2:3] == ["run"]:
            services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
            assert words[-1] in services, command


def test_helm_and_kubectl_commands_name_the_chart_its_values_and_files_that_exist() -> None:
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "rerank-sidecar" / "values.yaml").read_text())
    commands = _is("helm") + _is("kubectl")
    assert commands
    for command in commands:
        words = _words(command)
        if words[1] == "install":
            assert (ROOT / words[3] / "Chart.yaml").is_file(), command
            for flag, value in itertools.pairwise(words):
                if flag == "-f":
                    assert (ROOT / value).is_file(), command
                if flag == "--set":
                    node: Any = values
                    for key in value.partition("=")[0].split("."):
                        assert isinstance(node, dict) and key in node, command
                        node = node[key]
        if words[1] == "apply":
            assert (ROOT / words[words.index("-f") + 1]).is_file(), command


def test_no_command_of_an_unknown_kind() -> None:
    """A new kind of command in the docs needs its own check here."""
    known = {
        "rerank-sidecar",
        "python",
        "python3",
        "bash",
        "docker",
        "pip",
        "pytest",
        "export",
        "vllm",
        "curl",
        "helm",
        "kubectl",
        ".",
    }
    unknown = [c for c in COMMANDS if _words(c)[:1] and _words(c)[0] not in known]
    assert not unknown, unknown
    for command in _is("pytest"):
        for path in _words(command)[1:]:
            assert path.startswith("-") or (ROOT / path).exists(), command


def test_every_page_is_linked_from_the_readme_and_every_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in docs.PAGES[1:]:
        assert f"](docs/{page.name})" in readme, f"{page.name} is not linked from the README"
    for page in docs.PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
