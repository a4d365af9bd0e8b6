"""Rules files: found beside the config, merged under the inline keys, errors with their key path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.config import ConfigError, load_config
from sidecar.rewrite.load import compile_rewriters

CONFIG = """
models:
  m: {backend: bi-encoder, model: all-MiniLM-L6-v2}
routes:
  - indices: [kb]
    model: m
    fields: [text]
  - indices: [docs]
    model: m
    fields: [text]
    rewrite:
%s
"""


def write(tmp_path: Path, rewrite: str, rules: str | None = None) -> Path:
    if rules is not None:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "tech.yaml").write_text(rules)
    path = tmp_path / "sidecar.yaml"
    path.write_text(CONFIG % "\n".join("      " + line for line in rewrite.strip().splitlines()))
    return path


def test_rules_file_merges_under_the_inline_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
rules: rules/tech.yaml
abbreviations: {k8s: K8s cluster, LoRA: Low-Rank Adaptation}
synonyms: [[pod, workload]]
""",
        """
abbreviations: {k8s: Kubernetes, OOM: out of memory}
synonyms: [[fp16, half precision]]
context_entity: Qwen3-Reranker-0.6B
normalize: false
""",
    )
    config = load_config(path)
    rewriters = compile_rewriters(config, path.parent)
    assert rewriters[0] is None
    r = rewriters[1]
    assert r is not None
    assert r.cfg.abbreviations == {
        "k8s": "K8s cluster",
        "OOM": "out of memory",
        "LoRA": "Low-Rank Adaptation",
    }
    assert r.cfg.synonyms == [["fp16", "half precision"], ["pod", "workload"]]
    assert r.cfg.context_entity == "Qwen3-Reranker-0.6B" and r.cfg.normalize is False
    assert [v.text for v in r.rewrite("k8s pod OOM").variants] == [
        "K8s cluster pod out of memory",
        "K8s cluster workload out of memory",
    ]


def test_a_relative_rules_path_falls_back_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "shared.yaml").write_text("abbreviations: {k8s: Kubernetes}\n")
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    path = write(config_dir, "rules: shared.yaml")
    monkeypatch.chdir(tmp_path / "cwd")
    r = compile_rewriters(load_config(path), path.parent)[1]
    assert r is not None and r.cfg.abbreviations == {"k8s": "Kubernetes"}


@pytest.mark.parametrize(
    ("rewrite", "rules", "message"),
    [
        ("rules: rules/nope.yaml", None, "routes.1.rewrite.rules: rules/nope.yaml: cannot read"),
        ("rules: rules/tech.yaml", "synonyms: [[alone]]", "routes.1.rewrite.rules: "),
        ("rules: rules/tech.yaml", "max_variants: 2", "tech.yaml: max_variants: unknown key"),
        ("rules: rules/tech.yaml", "abbreviations: [", "tech.yaml: invalid YAML"),
    ],
)
def test_rules_file_errors_name_the_file_and_key(
    tmp_path: Path, rewrite: str, rules: str | None, message: str
) -> None:
    path = write(tmp_path, rewrite, rules)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        compile_rewriters(load_config(path), path.parent)


def test_inline_errors_name_the_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"routes\.1\.rewrite\.patterns: 0: invalid pattern"):
        load_config(write(tmp_path, "patterns: ['(a)\\1 => x']"))
    with pytest.raises(ConfigError, match=r"routes\.1\.rewrite\.aggregate: .*'best'"):
        load_config(write(tmp_path, "aggregate: best"))
    with pytest.raises(ConfigError, match=r"routes\.1\.rewrite\.max_variant: unknown key"):
        load_config(write(tmp_path, "max_variant: 3"))


def test_chinese_conversion_without_opencc_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "chinese: simplified")
    assert compile_rewriters(load_config(path), path.parent)[1] is not None
    monkeypatch.setitem(sys.modules, "opencc", None)  # as if it were not installed
    with pytest.raises(
        ConfigError, match=r"routes\.1\.rewrite\.chinese: .*pip install 'rerank-sidecar\[zh\]'"
    ):
        compile_rewriters(load_config(path), path.parent)


def test_check_config_reads_the_rules_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "rules: rules/tech.yaml", "abbreviations: {k8s: Kubernetes}")
    assert main(["check-config", str(good)]) == 0
    bad = write(tmp_path, "rules: rules/tech.yaml", "patterns: ['x => \\\\3']")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "routes.1.rewrite.rules" in err[0] and "refers to group 3" in err[0]
