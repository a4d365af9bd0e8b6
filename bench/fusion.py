"""The default fusion (auto) against replace and rrf on every set the defaults must not lose on.

Each row runs ``rerank-sidecar eval`` (a real osmem-server, a real sidecar per setting,
all-MiniLM-L6-v2 on the CPU) with the same route three times: no ``fusion`` key (the default),
``fusion: replace`` and ``fusion: rrf``; and prints NDCG@10 and top-1 right for each, the
cluster alone beside them, and whether the default is within 0.005 NDCG@10 (or one top-1 hit
on the 30-query sets) of the better of the two.

    python bench/fusion.py --data ../shared/data          # SciFact, Cranfield, the article set
    python bench/fusion.py --data ../shared/data --only article

Sets: SciFact (the tuning half; also its two halves, odd and even query positions), Cranfield
(all 225 queries), the article-style set (bench/data/article-dev and article-test, rerank only
and with the set's rewrite rules), and filter-only searches with the query text given in
``ext.rerank`` (every cluster score equal). Document embeddings are kept in the eval cache, so
a second run takes a few minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.cli import setup_logging  # noqa: E402
from sidecar.eval.command import DEFAULT_STORE, evaluate_settings  # noqa: E402

DATA = ROOT / "bench" / "data"
FUSIONS = ("default", "replace", "rrf")


def settings(base: Path, folder: Path) -> list[str]:
    """The base config three times: no fusion key, replace, rrf (rules paths made absolute)."""
    data = yaml.safe_load(base.read_text())
    out = []
    for fusion in FUSIONS:
        copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data))
        for route in copy["routes"]:
            route.pop("fusion", None)
            if fusion != "default":
                route["fusion"] = fusion
            rules = (route.get("rewrite") or {}).get("rules")
            if rules:
                route["rewrite"]["rules"] = str((base.parent / rules).resolve())
        path = folder / f"{fusion}.yaml"
        path.write_text(yaml.safe_dump(copy))
        out.append(str(path))
    return out


def run(dataset: Path, base: Path, query: Path | None, mapping: Path | None, index: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        args = argparse.Namespace(
            dataset=str(dataset), config=settings(base, Path(tmp)), index=index, embedded=True, json=None,
            plot=False, concurrency=4, query=str(query) if query else None,
            mapping=str(mapping) if mapping else None, cache=str(DEFAULT_STORE), no_cache=False, quiet=True,
        )  # fmt: skip
        return evaluate_settings(args)


def figures(per_query: dict[str, dict[str, float]], queries: list[str]) -> tuple[float, int]:
    return statistics.fmean(per_query[q]["ndcg@10"] for q in queries), int(
        sum(per_query[q]["hit@1"] for q in queries)
    )


def rows(label: str, report: dict[str, Any], halves: bool = False) -> list[str]:
    queries = list(report["baseline"]["per_query"])
    parts = [(label, queries)]
    if halves:
        parts += [(f"{label}, odd half", queries[0::2]), (f"{label}, even half", queries[1::2])]
    out = []
    for name, qs in parts:
        base = figures(report["baseline"]["per_query"], qs)
        got = {f: figures(report["settings"][f]["per_query"], qs) for f in FUSIONS}
        best_ndcg = max(got["replace"][0], got["rrf"][0])
        best_hits = max(got["replace"][1], got["rrf"][1])
        ok = got["default"][0] >= best_ndcg - 0.005 or (len(qs) <= 30 and got["default"][1] >= best_hits - 1)
        cells = " | ".join(f"{got[f][0]:.4f} ({got[f][1]}/{len(qs)})" for f in FUSIONS)
        out.append(f"| {name} | {base[0]:.4f} ({base[1]}/{len(qs)}) | {cells} | {'yes' if ok else 'NO'} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="BEIR-layout sets")
    parser.add_argument("--only", choices=["beir", "article"], help="run only these sets")
    args = parser.parse_args()
    setup_logging("warning")
    beir = ROOT / "configs" / "eval" / "minilm.yaml"
    article_query, article_mapping = DATA / "article-query.json", DATA / "article-mapping.json"
    print("| set | cluster alone | default (auto) | replace | rrf | default within 0.005 / 1 hit |")
    print("|---|---|---|---|---|---|")
    if args.only != "article":
        report = run(args.data / "scifact", beir, None, None, "scifact")
        print("\n".join(rows("SciFact (tuning half)", report, halves=True)), flush=True)
        report = run(args.data / "cranfield", beir, None, None, "cranfield")
        print("\n".join(rows("Cranfield (all)", report)), flush=True)
        report = run(args.data / "scifact", beir, DATA / "beir-filter-query.json", None, "scifact")
        print("\n".join(rows("SciFact, filter only + ext.rerank text", report)), flush=True)
    if args.only != "beir":
        for split in ("dev", "test"):
            folder = DATA / f"article-{split}"
            for name, base in (("rerank only", "article-rerank"), ("rewrite + rerank", "article-rewrite")):
                config = ROOT / "configs" / "eval" / f"{base}.yaml"
                report = run(folder, config, article_query, article_mapping, f"article-{split}")
                print("\n".join(rows(f"article {split}, {name}", report)), flush=True)
            config = ROOT / "configs" / "eval" / "article-rerank.yaml"
            report = run(
                folder, config, DATA / "article-filter-query.json", article_mapping, f"article-{split}"
            )
            print("\n".join(rows(f"article {split}, filter only + ext.rerank text", report)), flush=True)


if __name__ == "__main__":
    main()
