"""The default config against every other fusion on every set the defaults must not lose on.

Each row runs ``rerank-sidecar eval`` (a real osmem-server, a real sidecar per setting,
all-MiniLM-L6-v2 on the CPU) with the same route five times: the config as it is (no
``fusion`` key: ``auto``, and the language guard), then with the model said to read every
language (the guard off): no ``fusion`` key, ``fusion: linear`` with ``fusion_alpha: 0.7``,
``fusion: replace`` and ``fusion: rrf``; and prints NDCG@10 and top-1 right for each, the cluster alone
beside them, the share of searches the default made worse than the cluster, and whether the
default is within 0.005 NDCG@10 (or one top-1 hit on the 30-query sets) of the best of the
others and, on the Chinese sets, at or above the cluster alone minus 0.005.

    python bench/fusion.py --data ../shared/data          # every set
    python bench/fusion.py --data ../shared/data --only chinese
    python bench/fusion.py --data ../shared/data --heldout FOLDER   # SciFact's other half too

Sets: XQuAD-zh and CMRC 2018 dev (Chinese: the language guard answers them in the cluster's
order, as all-MiniLM-L6-v2 reads English), SciFact (the tuning half; also its two halves, odd
and even query positions), Cranfield (all 225 queries), the article-style set
(bench/data/article-dev and article-test, rerank only and with the set's rewrite rules), and
filter-only searches with the query text given in ``ext.rerank`` (every cluster score equal).
``--heldout FOLDER``: a BEIR folder with SciFact's held-out half (queries.jsonl and
qrels.tsv; the corpus is taken from --data's SciFact). Document embeddings are kept in the
eval cache, so a second run takes a few minutes (the first embeds every corpus: about 30).
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

from bench.data import dataset  # noqa: E402
from sidecar.eval.command import DEFAULT_STORE, evaluate_settings  # noqa: E402
from sidecar.logs import setup_logging  # noqa: E402

DATA = ROOT / "bench" / "data"
# the default config; then with the model reranking every language (the guard off): auto,
# linear (alpha 0.7), replace, rrf
FUSIONS = ("default", "unguarded", "linear", "replace", "rrf")
OTHERS = ("linear", "replace", "rrf")


def settings(base: Path, folder: Path) -> list[str]:
    """The base config five times: as it is, then with every model's ``languages: any`` and
    no fusion key, linear (alpha 0.7), replace, rrf (rules paths made absolute)."""
    data = yaml.safe_load(base.read_text())
    out = []
    for fusion in FUSIONS:
        copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data))
        if fusion != "default":
            for model in copy["models"].values():
                model["languages"] = ["any"]
        for route in copy["routes"]:
            route.pop("fusion", None)
            route.pop("fusion_alpha", None)
            if fusion not in ("default", "unguarded"):
                route["fusion"] = fusion
            if fusion == "linear":
                route["fusion_alpha"] = 0.7
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


def worse(report: dict[str, Any], queries: list[str]) -> float:
    """The share of the queries whose NDCG@10 the default made lower than the cluster's."""
    base, mine = report["baseline"]["per_query"], report["settings"]["default"]["per_query"]
    return sum(mine[q]["ndcg@10"] < base[q]["ndcg@10"] - 1e-9 for q in queries) / len(queries)


def rows(label: str, report: dict[str, Any], halves: bool = False, chinese: bool = False) -> list[str]:
    queries = list(report["baseline"]["per_query"])
    parts = [(label, queries)]
    if halves:
        parts += [(f"{label}, odd half", queries[0::2]), (f"{label}, even half", queries[1::2])]
    out = []
    for name, qs in parts:
        base = figures(report["baseline"]["per_query"], qs)
        got = {f: figures(report["settings"][f]["per_query"], qs) for f in FUSIONS}
        best_ndcg = max(got[f][0] for f in OTHERS)
        best_hits = max(got[f][1] for f in OTHERS)
        ok = got["default"][0] >= best_ndcg - 0.005 or (len(qs) <= 30 and got["default"][1] >= best_hits - 1)
        if chinese:  # no harm: the cluster's own figure is the bar
            ok = got["default"][0] >= base[0] - 0.005
        cells = " | ".join(f"{got[f][0]:.4f} ({got[f][1]}/{len(qs)})" for f in FUSIONS)
        out.append(
            f"| {name} | {base[0]:.4f} ({base[1]}/{len(qs)}) | {cells} | {worse(report, qs):.0%} |"
            f" {'yes' if ok else 'NO'} |"
        )
    return out


def heldout_set(folder: Path, corpus: Path, tmp: Path) -> Path:
    """A BEIR folder of the held-out queries and judgments over the full corpus."""
    out = tmp / "scifact-heldout"
    out.mkdir()
    for name in ("queries.jsonl", "qrels.tsv"):
        (out / name).write_bytes((folder / name).read_bytes())
    (out / "corpus.jsonl").symlink_to(corpus.resolve())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="BEIR-layout sets")
    parser.add_argument("--only", choices=["chinese", "beir", "article"], help="run only these sets")
    parser.add_argument("--heldout", type=Path, help="a BEIR folder of SciFact's held-out queries and qrels")
    args = parser.parse_args()
    setup_logging("warning")
    sets = {
        None: ("xquad_zh_retrieval", "cmrc2018_dev_retrieval", "scifact", "cranfield"),
        "chinese": ("xquad_zh_retrieval", "cmrc2018_dev_retrieval"),
        "beir": ("scifact", "cranfield"),
        "article": (),
    }[args.only]
    for name in sets:  # what each set needs, said before any run starts
        dataset(
            args.data / name,
            "bench/fusion.py",
            hint="--data names a folder of BEIR-layout sets: scifact/, cranfield/, xquad_zh_retrieval/,"
            " cmrc2018_dev_retrieval/ (as in the development workspace's ../shared/data); --only article"
            " needs none of them",
        )
    beir = ROOT / "configs" / "eval" / "minilm.yaml"
    article_query, article_mapping = DATA / "article-query.json", DATA / "article-mapping.json"
    print(
        "| set | cluster alone | default | auto, every language | linear (alpha 0.7) | replace | rrf"
        " | made worse by the default | no harm / within 0.005 of the best |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    if args.only in (None, "chinese"):
        for name, label in (("xquad_zh_retrieval", "XQuAD-zh"), ("cmrc2018_dev_retrieval", "CMRC 2018 dev")):
            report = run(args.data / name, beir, None, None, name)
            print("\n".join(rows(label, report, chinese=True)), flush=True)
    if args.heldout is not None and args.only in (None, "beir"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = heldout_set(args.heldout, args.data / "scifact" / "corpus.jsonl", Path(tmp))
            report = run(folder, beir, None, None, "scifact")
            print("\n".join(rows("SciFact, held-out half", report)), flush=True)
    if args.only in (None, "beir"):
        report = run(args.data / "scifact", beir, None, None, "scifact")
        print("\n".join(rows("SciFact (tuning half)", report, halves=True)), flush=True)
        report = run(args.data / "cranfield", beir, None, None, "cranfield")
        print("\n".join(rows("Cranfield (all)", report)), flush=True)
        report = run(args.data / "scifact", beir, DATA / "beir-filter-query.json", None, "scifact")
        print("\n".join(rows("SciFact, filter only + ext.rerank text", report)), flush=True)
    if args.only in (None, "article"):
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
