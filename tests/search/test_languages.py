"""The script detector, what each model reads, the language step's decisions, the config keys
and the rules of one language."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.config import ConfigError, parse_config
from sidecar.config.rewrite import RewriteConfig
from sidecar.eval.collect import Window, collecting_config, replay
from sidecar.language import Reads, default_languages, detect, key_of
from sidecar.rewrite.rules import Rewriter
from sidecar.search.languages import decided, detected, of_window, reranker
from sidecar.search.plan import Bypass, SearchPlan, plan_search
from sidecar.vocab import Reason


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("0-dimensional biomaterials show inductive properties.", "latin"),
        ("Crème brûlée au four", "latin"),
        ("黑豹队的防守丢了多少分？", "zh"),
        ("LoRA rank多少合适", "zh"),  # four Han tokens against two Latin words
        ("東京の天気はどうですか", "ja"),  # kanji among kana
        ("서울 날씨", "ko"),
        ("Привет, мир", "cyrillic"),
        ("Καλημέρα", "el"),
        ("שלום", "he"),
        ("สวัสดีครับ", "th"),
        ("مرحبا بالعالم", "arabic"),
    ],
)
def test_the_script_tells_the_language(text: str, language: str) -> None:
    found = detect(text)
    assert found is not None and found.language == language


def test_a_text_without_letters_has_no_language() -> None:
    assert detect("2024") is None and detect("13 / 4.5 %") is None and detect("") is None


def test_a_model_reads_a_text_when_a_third_of_it_is_in_its_scripts() -> None:
    english = Reads.of(["en"])
    assert english(detect("what LoRA rank should I use"))
    assert english(detect("LoRA rank多少合适"))  # two Latin tokens, four Han
    assert english(detect("flash attention 装不上"))
    assert not english(detect("windows 系统更新失败"))  # one against six
    assert not english(detect("怎么重启"))
    assert english(detect("Wie starte ich den Rechner neu"))  # the script cannot tell German
    assert english(None)  # no letters: nothing to refuse
    assert Reads.of(["any"])(detect("怎么重启")) and Reads.of(["any"]).everything
    assert Reads.of(["zh", "en"])(detect("怎么重启")) and not Reads.of(["zh"])(detect("こんにちは"))
    assert Reads.of(["ru"])(detect("Добрый день")) and Reads.of(["cyrillic"])(detect("Добрый день"))


def test_language_codes_and_script_names() -> None:
    assert key_of("de") == "latin" and key_of("zh-Hant") == "zh" and key_of("han") == "zh"
    assert key_of("cyrillic") == "cyrillic" and key_of("JA") == "ja"
    with pytest.raises(ValueError, match="klingon"):
        key_of("klingon")


@pytest.mark.parametrize(
    ("backend", "model", "languages"),
    [
        ("bi-encoder", "all-MiniLM-L6-v2", ("en",)),
        ("bi-encoder", "sentence-transformers/all-MiniLM-L6-v2", ("en",)),
        ("cross-encoder", "cross-encoder/ms-marco-MiniLM-L-6-v2", ("en",)),
        ("bi-encoder", "BAAI/bge-small-en-v1.5", ("en",)),
        ("cross-encoder", "BAAI/bge-reranker-v2-m3", ("any",)),
        ("bi-encoder", "intfloat/multilingual-e5-small", ("any",)),
        ("bi-encoder", "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", ("any",)),
        ("cross-encoder", "cross-encoder/mmarco-mMiniLMv2-L12-H384-v1", ("any",)),
        ("qwen3", "Qwen/Qwen3-Reranker-0.6B", ("any",)),
        ("remote", None, ("any",)),
        ("bi-encoder", "my-org/some-encoder", ("any",)),  # unknown: nothing refused
    ],
)
def test_what_the_models_the_docs_name_read(
    backend: str, model: str | None, languages: tuple[str, ...]
) -> None:
    assert default_languages(backend, model) == languages


def config(**route: Any) -> Any:
    return parse_config(
        {
            "models": {
                "minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2"},
                "qwen3": {"backend": "qwen3", "model": "Qwen/Qwen3-Reranker-0.6B"},
                "ru": {"backend": "bi-encoder", "model": "x", "languages": "ru"},
            },
            "routes": [{"indices": ["kb"], "model": "minilm", "fields": ["text"], **route}],
        }
    )


def test_the_config_keys_are_checked_at_load() -> None:
    c = config(models_by_language={"han": "qwen3", "cyrillic": "ru"})
    assert c.routes[0].models_by_language == {"zh": "qwen3", "cyrillic": "ru"}
    assert c.models["ru"].languages == ["ru"] and c.models["minilm"].reads == Reads.of(["en"])
    assert c.used_models() == {"minilm", "qwen3", "ru"}
    with pytest.raises(ConfigError, match="cannot tell de from the other latin-script languages"):
        config(models_by_language={"de": "qwen3"})
    with pytest.raises(ConfigError, match=r"models_by_language.zh: unknown model 'nope'"):
        config(models_by_language={"zh": "nope"})
    with pytest.raises(ConfigError, match="klingon"):
        parse_config({"models": {"m": {"backend": "bi-encoder", "model": "x", "languages": ["klingon"]}}})


def _plan(query: str, **route: Any) -> tuple[Any, Reads, SearchPlan]:
    c = config(**route)
    plan = plan_search(c.routes[0], {"query": {"match": {"text": query}}}, [], {})
    assert isinstance(plan, SearchPlan)
    return c.routes[0], c.models["minilm"].reads, plan


def test_the_language_step_decides_by_the_query_its_variants_and_the_routes_models() -> None:
    route, reads, plan = _plan("怎么重启容器")
    plan = detected(route, reads, plan)
    assert plan.language == "zh" and not plan.window_language
    assert decided(route, reads, plan) == Bypass(Reason.LANGUAGE)
    route, reads, plan = _plan("怎么重启容器", models_by_language={"zh": "qwen3"})
    chosen = decided(route, reads, detected(route, reads, plan))
    assert isinstance(chosen, SearchPlan) and chosen.model == "qwen3"
    assert chosen.effective(route).model == "qwen3"
    # the language's own model first (it reads the query itself), then a variant the route's reads
    assert reranker(route, reads, "怎么重启容器", ["restart a container"]) == "qwen3"
    plain, _, _ = _plan("怎么重启容器")
    assert reranker(plain, reads, "怎么重启容器", ["restart a container"]) == "minilm"
    assert reranker(plain, reads, "怎么重启容器", ["重启 容器"]) is None
    route, reads, plan = _plan("2024")
    assert detected(route, reads, plan).window_language
    # a model that reads every language: nothing is detected at all
    c = config(model="qwen3")
    plan = plan_search(c.routes[0], {"query": {"match": {"text": "怎么重启"}}}, [], {})
    assert isinstance(plan, SearchPlan)
    assert detected(c.routes[0], c.models["qwen3"].reads, plan) == plan


def test_a_window_tells_the_language_of_a_query_without_letters() -> None:
    route, reads, _ = _plan("2024", models_by_language={"zh": "qwen3"})
    assert of_window(route, reads, ["2024 年度报告", "二零二四年的变化"]) == ("zh", "qwen3", True)
    assert of_window(route, reads, ["The 2024 release", "notes"]) == ("latin", None, True)
    route, reads, _ = _plan("2024")
    assert of_window(route, reads, ["2024 年度报告"]) == ("zh", None, False)
    assert of_window(route, reads, ["", ""]) == (None, None, True)


def test_rules_of_one_language_apply_to_its_queries_only() -> None:
    cfg = RewriteConfig.model_validate(
        {
            "abbreviations": {"k8s": "Kubernetes"},
            "by_language": {"han": {"abbreviations": {"显卡": "GPU"}, "synonyms": [["重启", "restart"]]}},
        }
    )
    rewriter = Rewriter(cfg)
    zh = rewriter.for_language("zh")
    assert (
        zh is not rewriter
        and rewriter.for_language("latin") is rewriter
        and rewriter.for_language(None) is rewriter
    )
    assert [v.text for v in zh.rewrite("显卡 k8s").variants] == ["GPU Kubernetes"]
    assert [v.text for v in rewriter.rewrite("显卡 k8s").variants] == ["显卡 Kubernetes"]
    with pytest.raises(ValueError, match="by_language inside by_language"):
        RewriteConfig.model_validate({"by_language": {"zh": {"by_language": {"ja": {}}}}})


def test_tuning_replays_the_guard_and_collects_every_query() -> None:
    c = config()
    collecting = collecting_config(c, 0, 100, 5000)
    assert collecting.models["minilm"].languages == ["any"]  # scores for every query
    # a window of 100 scored hits takes tens of kilobytes: 5,000 of them are kept until read
    assert collecting.events.buffer >= 5000 and collecting.events.buffer_bytes >= 5000 * 100_000
    w = Window(("a", "b"), (2.0, 1.0), ((0.1, 0.9),))
    assert replay(w, c.routes[0]) == ["b", "a"]
    assert replay(Window(w.ids, w.cluster, w.scores, unread=True), c.routes[0]) == ["a", "b"]
