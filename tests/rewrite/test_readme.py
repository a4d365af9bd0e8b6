"""The README's rewrite examples are a config the sidecar accepts, and do what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sidecar.config import parse_config
from sidecar.rewrite.load import compile_rewriters
from tests import docs

ROOT = Path(__file__).resolve().parents[2]


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", docs.text(), re.DOTALL)


def test_the_readme_rewrite_block_and_llm_block_load() -> None:
    (block,) = [b for b in yaml_blocks() if "max_variants" in b]
    (llm,) = [b for b in yaml_blocks() if b.lstrip().startswith("llm:")]
    data = yaml.safe_load(block)
    data["routes"][0]["rewrite"]["llm"] = yaml.safe_load(llm)["llm"]
    data["models"] = {"minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2"}}
    (rewriter,) = compile_rewriters(parse_config(data), ROOT / "configs")
    assert rewriter is not None and rewriter.cfg.llm is not None
    texts = [v.text for v in rewriter.rewrite("it doesn't support fp16").variants]
    assert texts[0] == "Qwen3-Reranker-0.6B doesn't support fp16"
    # the rules file strips the question word (pattern ^(?:怎么|如何)(.+)$); the subject is still added
    assert next(v.text for v in rewriter.rewrite("怎么配置").variants) == "配置 Qwen3-Reranker-0.6B"
    assert [v.text for v in rewriter.rewrite("ｋ８ｓ").variants] == ["Kubernetes"]


def test_the_demo_config_and_its_rules_file_load() -> None:
    from sidecar.config import load_config

    (rewriter,) = compile_rewriters(load_config(ROOT / "configs" / "demo.yaml"), ROOT / "configs")
    assert rewriter is not None
    assert [v.text for v in rewriter.rewrite("k8s pod OOM").variants] == ["Kubernetes pod out of memory"]
