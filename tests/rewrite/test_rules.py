"""Each rule kind on English and Chinese queries, whole-token matching, variant order and bounds."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sidecar.config.rewrite import RewriteConfig
from sidecar.rewrite.load import chinese_converter
from sidecar.rewrite.rules import Rewriter


def rewriter(**rules: Any) -> Rewriter:
    cfg = RewriteConfig(**rules)
    return Rewriter(cfg, chinese_converter(cfg.chinese))


def texts(r: Rewriter, query: str, context: str | None = None) -> list[str]:
    return [v.text for v in r.rewrite(query, context).variants]


def test_the_issues_examples() -> None:
    r = rewriter(
        abbreviations={"k8s": "Kubernetes", "LoRA": "Low-Rank Adaptation", "OOM": "out of memory"},
        synonyms=[["显存", "GPU memory"], ["fp16", "half precision"]],
        context_entity="Qwen3-Reranker-0.6B",
    )
    assert texts(r, "怎么重启") == ["怎么重启 Qwen3-Reranker-0.6B"]
    assert texts(r, "LoRA rank多少合适") == ["Low-Rank Adaptation rank多少合适"]
    assert texts(r, "it doesn't support fp16") == [
        "Qwen3-Reranker-0.6B doesn't support fp16",
        "Qwen3-Reranker-0.6B doesn't support half precision",
    ]
    assert texts(r, "k8s pod OOM") == ["Kubernetes pod out of memory"]


def test_abbreviations_whole_token_and_case_rules() -> None:
    r = rewriter(abbreviations={"k8s": "Kubernetes", "IT": "information technology", "显存": "GPU memory"})
    assert texts(r, "K8S pods") == ["Kubernetes pods"]
    assert texts(r, "k8sfoo pods") == []  # inside a longer token
    assert texts(r, "my-k8s-cluster") == ["my-Kubernetes-cluster"]  # punctuation bounds a token
    assert texts(r, "IT budget") == ["information technology budget"]
    assert texts(r, "is it slow") == []  # a capitals-only key matches only in capitals
    assert texts(r, "显存不足") == ["GPU memory 不足"]  # CJK has no spaces: any run of characters
    explicit = rewriter(abbreviations={"oom": {"expand": "out of memory", "case": "sensitive"}})
    assert texts(explicit, "pod OOM") == []
    assert texts(explicit, "pod oom") == ["pod out of memory"]


def test_longest_term_wins() -> None:
    r = rewriter(abbreviations={"GPU": "graphics processor", "GPU memory": "VRAM"})
    assert texts(r, "GPU memory fraction") == ["VRAM fraction"]
    assert texts(r, "GPU fraction") == ["graphics processor fraction"]


def test_synonym_groups_are_two_way_one_way_rules_are_not() -> None:
    r = rewriter(synonyms=[["notebook", "laptop"], "cellphone => mobile phone, smartphone"])
    assert texts(r, "cheap notebook") == ["cheap laptop"]
    assert texts(r, "cheap laptop") == ["cheap notebook"]
    assert texts(r, "cellphone case") == ["mobile phone case", "smartphone case"]
    assert texts(r, "smartphone case") == []
    assert texts(r, "notebooks") == []  # not inside a longer word
    zh = rewriter(synonyms=[["显存", "GPU memory", "VRAM"]])
    assert texts(zh, "显存不够") == ["GPU memory 不够", "VRAM 不够"]
    rules = [v.rules for v in zh.rewrite("显存不够").variants]
    assert rules == [("synonym:显存=>GPU memory",), ("synonym:显存=>VRAM",)]


def test_replace_terms_prefixes_and_suffixes() -> None:
    r = rewriter(replace={"pytorh": "pytorch", "colour*": "color*", "*isation": "*ization", "怎麼": "怎么"})
    v = r.rewrite("Pytorh colourful optimisation").variants
    assert [x.text for x in v] == ["pytorch colorful optimization"]
    assert v[0].rules == ("replace:Pytorh", "replace:colour*", "replace:*isation")
    assert texts(r, "colour isation") == []  # a wildcard needs more than its own text
    assert texts(r, "怎麼重啟") == ["怎么重啟"]


def test_entities_from_the_route_and_the_header() -> None:
    r = rewriter(context_entity="Qwen3-Reranker-0.6B")
    assert texts(r, "它支持fp16吗") == ["Qwen3-Reranker-0.6B 支持fp16吗"]
    assert texts(r, "why does this fail") == ["why does Qwen3-Reranker-0.6B fail"]
    assert texts(r, "this model is slow") == []  # a determiner, not a pronoun
    assert texts(r, "IT policy") == []  # capitals: an abbreviation
    assert texts(r, "how to configure") == ["how to configure Qwen3-Reranker-0.6B"]
    assert texts(r, "kubernetes") == []  # one word with no question form is its own subject
    assert texts(r, "how to fix Qwen3-Reranker-0.6B") == []  # the entity is there already
    assert texts(r, "怎么配置", context="Elasticsearch") == ["怎么配置 Elasticsearch"]
    assert texts(rewriter(), "怎么配置", context="OpenSearch") == ["怎么配置 OpenSearch"]
    assert texts(rewriter(), "怎么配置") == []
    assert texts(rewriter(context_entity="X", append_entity=False), "怎么配置") == []
    assert texts(rewriter(context_entity="X", pronouns=["其"]), "it fails") == []


def test_patterns_in_order() -> None:
    r = rewriter(
        patterns=[
            r"^how (?:do|can) i (.+)$ => \1",
            {"match": r"^(?P<x>.+?)是什么$", "replace": r"\g<x> 定义"},
            {"match": r"^Setup (.+)$", "replace": r"set up \1", "case": "sensitive"},
        ]
    )
    v = r.rewrite("How do I restart a pod?").variants
    assert [(x.text, x.rules) for x in v] == [("restart a pod", ("normalize", "pattern:0"))]
    assert texts(r, "LoRA是什么？") == ["LoRA 定义"]
    assert texts(r, "setup nginx") == []
    assert texts(r, "Setup nginx") == ["set up nginx"]


def test_normalize_full_width_and_punctuation_before_rules() -> None:
    r = rewriter(abbreviations={"k8s": "Kubernetes"})
    assert texts(r, "ｋ８ｓ　ｐｏｄ重启。") == ["Kubernetes pod重启"]
    assert texts(rewriter(normalize=False, abbreviations={"k8s": "Kubernetes"}), "ｋ８ｓ pod") == []
    # normalization alone makes no variant: it is the same query
    assert texts(r, "ＬｏＲＡ  rank？") == []


def test_traditional_to_simplified() -> None:
    r = rewriter(chinese="simplified", abbreviations={"显存": "GPU memory"})
    assert texts(r, "顯存不足") == ["GPU memory 不足"]


def test_variants_are_distinct_ordered_bounded_and_deterministic() -> None:
    rules: dict[str, Any] = {
        "abbreviations": {"k8s": "Kubernetes"},
        "synonyms": [["pod", "container group", "workload"], ["restart", "reboot", "recreate"]],
        "context_entity": "GKE",
    }
    r = rewriter(**rules)
    v = r.rewrite("k8s pod restart").variants
    assert [x.text for x in v] == [
        "Kubernetes pod restart",
        "Kubernetes container group restart",
        "Kubernetes workload restart",
    ]
    assert r.rewrite("k8s pod restart") == rewriter(**rules).rewrite("k8s pod restart")
    assert len(rewriter(max_variants=1, **rules).rewrite("k8s pod restart").variants) == 1
    assert rewriter(max_variants=0, **rules).rewrite("k8s pod restart").variants == ()
    five = rewriter(max_variants=5, **rules).rewrite("k8s pod restart").variants
    assert len(five) == 5 and len({x.text for x in five}) == 5
    # a variant equal to the query after normalization is dropped: 显存 -> GPU memory -> 显存
    back = rewriter(abbreviations={"显存": "GPU memory"}, synonyms=[["显存", "GPU memory"]])
    assert texts(back, "显存不足") == ["GPU memory 不足"]


def test_rewrite_lists_every_rule_fired() -> None:
    r = rewriter(abbreviations={"k8s": "Kubernetes"}, synonyms=[["pod", "workload"]])
    rw = r.rewrite("k8s pod")
    assert rw.rules == ["abbreviation:k8s", "synonym:pod=>workload"]


def test_long_queries_are_not_rewritten() -> None:
    r = rewriter(abbreviations={"k8s": "Kubernetes"}, max_query_chars=20)
    assert texts(r, "k8s " + "x" * 30) == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"patterns": ["(a)\\1 => x"]}, "0: invalid pattern '(a)\\\\1': invalid escape sequence"),
        ({"patterns": ["(a) => \\2"]}, "refers to group 2"),
        ({"patterns": ["no arrow"]}, "expected 'regex => replacement'"),
        ({"synonyms": [["alone"]]}, "needs two terms"),
        ({"synonyms": ["a => "]}, "terms on both sides"),
        ({"replace": {"col*our": "x"}}, "'*' only at the start"),
        ({"replace": {"colour*": "color"}}, "must carry '*'"),
        ({"abbreviations": {" ": "x"}}, "empty key"),
    ],
)
def test_bad_rules_are_rejected_with_the_reason(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        RewriteConfig(**rules)


@pytest.mark.parametrize(
    ("rules", "query"),
    [
        ({"abbreviations": {"rank": "ordering"}}, "ranking lora"),
        ({"abbreviations": {"GPU": "graphics card"}}, "eGPUs and multiGPU rigs"),
        ({"synonyms": [["pod", "workload"]]}, "podman ipod pods"),
        ({"replace": {"teh": "the"}}, "tehran"),
        ({"replace": {"colour*": "color*"}}, "watercolours"),
        ({"replace": {"*isation": "*ization"}}, "isations"),
        ({"context_entity": "X"}, "items with italic titles"),
        ({"context_entity": "X"}, "thistle and thatch"),
        ({"abbreviations": {"k8s": "Kubernetes"}}, "k8s_cluster k8s2"),
    ],
)
def test_no_rule_fires_inside_a_longer_token(rules: dict[str, Any], query: str) -> None:
    assert texts(rewriter(**rules), query) == []


def test_an_expansion_does_not_repeat_the_words_the_query_goes_on_with() -> None:
    rw = Rewriter(
        RewriteConfig(
            abbreviations={
                "LoRA": {"expand": "LoRA low-rank adapter", "case": "insensitive"},
                "k8s": "Kubernetes cluster",
            }
        )
    )
    assert [v.text for v in rw.rewrite("merge LoRA adapter").variants] == ["merge LoRA low-rank adapter"]
    assert [v.text for v in rw.rewrite("lora rank").variants] == ["LoRA low-rank adapter rank"]
    assert [v.text for v in rw.rewrite("k8s cluster autoscaler").variants] == [
        "Kubernetes cluster autoscaler"
    ]
