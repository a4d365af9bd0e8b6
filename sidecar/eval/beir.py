"""Public BEIR datasets by name: ``beir/scifact`` is downloaded once (the zip the BEIR authors
publish), checked, and kept as a folder in the layout ``load_dataset`` reads."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import httpx

from sidecar.eval.dataset import DatasetError

# where the BEIR authors publish their zips; RERANK_SIDECAR_BEIR_URL replaces it (a mirror)
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
CACHE = Path("~/.cache/rerank-sidecar/datasets")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MIRROR = (
    "; where that host cannot be reached, set RERANK_SIDECAR_BEIR_URL to a mirror's URL of the zips"
    " ({name} stands for the dataset: https://mirror.example/beir/{name}.zip), or give a local folder"
    " with corpus.jsonl, queries.jsonl and qrels.tsv"
)


def dataset_folder(spec: str, split: str = "test", cache: Path | None = None) -> Path:
    """The folder of a dataset: a local path as it is, or ``beir/NAME`` fetched into the cache
    (the ``split`` qrels as qrels.tsv) unless it is there already."""
    if not spec.startswith("beir/"):
        return Path(spec)
    name = spec.removeprefix("beir/")
    if not _NAME.fullmatch(name) or not _NAME.fullmatch(split):
        raise DatasetError(f"{spec}: a BEIR dataset name such as beir/scifact (and a split such as test)")
    root = (cache or CACHE).expanduser() / "beir" / split
    folder = root / name
    if (folder / ".complete").is_file():
        return folder
    url = os.environ.get("RERANK_SIDECAR_BEIR_URL", BEIR_URL).format(name=name)
    made = [d for d in (root, *root.parents) if not d.exists()]  # what a failure takes back
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.") as tmp:
            archive = Path(tmp) / f"{name}.zip"
            _download(url, archive, spec)
            staged = Path(tmp) / name
            _unpack(archive, name, split, staged, spec)
            (staged / ".complete").write_text(url + "\n")
            if folder.exists():  # a half-written folder of an earlier, interrupted run
                shutil.rmtree(folder)
            staged.rename(folder)
    except BaseException:
        for d in made:  # deepest first: no empty cache folders left behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return folder


def _download(url: str, dest: Path, spec: str) -> None:
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(30.0, read=120.0)) as r:
            if r.status_code != 200:
                raise DatasetError(f"{spec}: {url} answered HTTP {r.status_code}{_MIRROR}")
            with dest.open("wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    f.write(chunk)
    except httpx.HTTPError as e:
        raise DatasetError(f"{spec}: cannot download {url}: {type(e).__name__}: {e}{_MIRROR}") from None


def _unpack(archive: Path, name: str, split: str, dest: Path, spec: str) -> None:
    """corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv of the zip (under NAME/ or at its top)
    into ``dest`` as corpus.jsonl, queries.jsonl, qrels.tsv; DatasetError for a bad zip."""
    try:
        with zipfile.ZipFile(archive) as z:
            broken = z.testzip()
            if broken is not None:
                raise DatasetError(f"{spec}: the download is damaged ({broken} fails its CRC)")
            members = set(z.namelist())
            prefix = f"{name}/" if f"{name}/corpus.jsonl" in members else ""
            wanted = {
                "corpus.jsonl": "corpus.jsonl",
                "queries.jsonl": "queries.jsonl",
                f"qrels/{split}.tsv": "qrels.tsv",
            }
            missing = [m for m in wanted if prefix + m not in members]
            if missing:
                raise DatasetError(f"{spec}: the zip has no {', '.join(prefix + m for m in missing)}")
            dest.mkdir()
            for member, target in wanted.items():
                with z.open(prefix + member) as src, (dest / target).open("wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile:
        raise DatasetError(f"{spec}: the download is not a zip file") from None
