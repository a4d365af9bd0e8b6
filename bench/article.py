"""The article-style test: short, vague or abbreviated queries, each over its own 3-5 candidates
with one right answer (bench/data/article-dev and article-test; see their SOURCE.md).

Prints top-1 right for the cluster alone (BM25), rerank only and rewrite + rerank, both with the
default config (no fusion key; configs/eval/article-rerank.yaml and article-rewrite.yaml), per
half, per kind of query and per language, through a real osmem-server and real sidecars with
all-MiniLM-L6-v2 on the CPU.

    python bench/article.py
    python bench/article.py --models qwen3.yaml   # the same with another model, e.g. Qwen3 on a GPU

``--models FILE``: a YAML file with a ``models:`` mapping; its first model replaces MiniLM.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.eval.command import evaluate_settings  # noqa: E402
from sidecar.eval.dataset import load_dataset  # noqa: E402
from sidecar.logs import setup_logging  # noqa: E402

DATA = ROOT / "bench" / "data"
CONFIGS = {
    "rerank only": ROOT / "configs" / "eval" / "article-rerank.yaml",
    "rewrite + rerank": ROOT / "configs" / "eval" / "article-rewrite.yaml",
}


def _chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, help="YAML with a models: mapping; its first model is used")
    args = parser.parse_args()
    setup_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        configs = [_with_models(c, args.models, Path(tmp)) if args.models else c for c in CONFIGS.values()]
        run([str(c) for c in configs])


def _with_models(config: Path, models: Path, folder: Path) -> Path:
    """The config with another model in MiniLM's place (rules paths made absolute)."""
    data = yaml.safe_load(config.read_text())
    data["models"] = yaml.safe_load(models.read_text())["models"]
    for route in data["routes"]:
        route["model"] = next(iter(data["models"]))
        rules = (route.get("rewrite") or {}).get("rules")
        if rules:
            route["rewrite"]["rules"] = str((config.parent / rules).resolve())
    out = folder / config.name
    out.write_text(yaml.safe_dump(data))
    return out


def run(configs: list[str]) -> None:
    """Both halves through the two configs; the table."""
    print(f"{'half':<6} {'queries':<22} {'n':>3} {'BM25':>6} {'rerank only':>12} {'rewrite + rerank':>17}")
    for split in ("dev", "test"):
        folder = DATA / f"article-{split}"
        ds = load_dataset(folder)
        args = argparse.Namespace(
            dataset=str(folder), config=configs, index=f"article-{split}",
            embedded=True, json=None, plot=False, concurrency=4, query=str(DATA / "article-query.json"),
            mapping=str(DATA / "article-mapping.json"), cache=None, no_cache=True, quiet=True,
        )  # fmt: skip
        report = evaluate_settings(args)
        columns = [report["baseline"]] + [report["settings"][Path(c).stem] for c in configs]
        groups: dict[str, list[str]] = {"all": list(ds.queries)}
        for kind in ("long-tail", "two-senses", "vague"):
            groups[kind] = [q for q, meta in ds.metadata.items() if meta["kind"] == kind]
        groups["English queries"] = [q for q in ds.queries if not _chinese(ds.queries[q])]
        groups["Chinese queries"] = [q for q in ds.queries if _chinese(ds.queries[q])]
        for name, qs in groups.items():
            top1 = [int(sum(col["per_query"][q]["hit@1"] for q in qs)) for col in columns]
            print(f"{split:<6} {name:<22} {len(qs):>3} {top1[0]:>6} {top1[1]:>12} {top1[2]:>17}", flush=True)


if __name__ == "__main__":
    main()
