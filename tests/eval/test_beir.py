"""BEIR datasets by name, fetched from a local HTTP server that serves a zip in BEIR's layout."""

from __future__ import annotations

import http.server
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.eval.beir import dataset_folder
from sidecar.eval.dataset import DatasetError, load_dataset

SLICE = Path(__file__).resolve().parents[1] / "data" / "scifact-slice"


class ZipServer:
    """Serves /NAME.zip from a folder on loopback, counting the requests."""

    def __init__(self, folder: Path) -> None:
        served = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kw: object) -> None:
                super().__init__(*args, directory=str(folder), **kw)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                served.requests += 1
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.requests = 0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{name}}.zip"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ZipServer]:
    folder = tmp_path / "www"
    folder.mkdir()
    with zipfile.ZipFile(folder / "slice.zip", "w") as z:  # as BEIR lays its zips out
        z.write(SLICE / "corpus.jsonl", "slice/corpus.jsonl")
        z.write(SLICE / "queries.jsonl", "slice/queries.jsonl")
        z.write(SLICE / "qrels.tsv", "slice/qrels/test.tsv")
    (folder / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with zipfile.ZipFile(folder / "partial.zip", "w") as z:
        z.write(SLICE / "corpus.jsonl", "partial/corpus.jsonl")
    s = ZipServer(folder)
    monkeypatch.setenv("RERANK_SIDECAR_BEIR_URL", s.url)
    yield s
    s.httpd.shutdown()


def test_a_beir_name_is_downloaded_once_and_read_like_a_folder(server: ZipServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folder = dataset_folder("beir/slice", cache=cache)
    local = load_dataset(SLICE)
    fetched = load_dataset(folder)
    assert fetched.name == "slice" and fetched.queries == local.queries and fetched.qrels == local.qrels
    assert (folder / "corpus.jsonl").read_bytes() == (SLICE / "corpus.jsonl").read_bytes()
    assert dataset_folder("beir/slice", cache=cache) == folder and server.requests == 1  # the cache
    assert dataset_folder(str(SLICE)) == SLICE  # a local path stays a local path


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("beir/broken", "not a zip file"),
        ("beir/partial", "has no partial/queries.jsonl, partial/qrels/test.tsv"),
        ("beir/absent", "answered HTTP 404"),
        ("beir/../etc", "a BEIR dataset name"),
    ],
)
def test_a_bad_download_is_a_clear_error_and_leaves_nothing(
    server: ZipServer, tmp_path: Path, spec: str, message: str
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=message):
        dataset_folder(spec, cache=cache)
    assert not cache.exists()  # no file, and no empty folder either


def test_no_network_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_SIDECAR_BEIR_URL", "http://127.0.0.1:9/{name}.zip")  # nothing listens there
    with pytest.raises(DatasetError, match=re.escape("cannot download http://127.0.0.1:9/scifact.zip")) as e:
        dataset_folder("beir/scifact", cache=tmp_path / "cache")
    assert "RERANK_SIDECAR_BEIR_URL" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists()
