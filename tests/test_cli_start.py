"""The commands that only read arguments or a config start without the model stack."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "onnxruntime", "httpx", "numpy", "uvicorn")


def _imported(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_parser_of_every_command_imports_no_model_stack() -> None:
    loaded = _imported("from sidecar.cli import build_parser; build_parser().format_help()")
    assert not {m for m in HEAVY if m in loaded}


def test_check_config_imports_no_model_stack(tmp_path: object) -> None:
    code = (
        "import contextlib, io\nfrom sidecar.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['check-config', 'configs/demo.yaml']) == 0"
    )
    loaded = _imported(code)
    assert not {m for m in ("torch", "transformers", "onnxruntime", "uvicorn") if m in loaded}


def test_version_and_config_everywhere() -> None:
    r = subprocess.run([sys.executable, "-m", "sidecar.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("rerank-sidecar ")
    for args in (["check-config", "configs/demo.yaml"], ["check-config", "--config", "configs/demo.yaml"]):
        r = subprocess.run([sys.executable, "-m", "sidecar.cli", *args], capture_output=True, text=True)
        assert r.returncode == 0 and "configs/demo.yaml: ok" in r.stdout, (args, r.stderr)
    r = subprocess.run([sys.executable, "-m", "sidecar.cli", "check-config"], capture_output=True, text=True)
    assert r.returncode == 2 and "--config" in r.stderr
