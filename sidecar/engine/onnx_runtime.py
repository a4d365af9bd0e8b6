"""ONNX Runtime for the encoder backends on a CPU: the model's forward (with the backend's own
head: pooling for a bi-encoder, the logits for a cross-encoder) exported once with
``torch.onnx.export`` (the dynamo exporter), cached under a hash of the weights and settings,
and checked against torch at every load. It runs outside the GIL and without torch's and
transformers' per-call Python, which at one query a forward is most of a small model's time.

Why this exporter: it comes with torch, so there is no second package pinned to transformers'
versions (optimum-onnx), and it traces the model as transformers runs it today. The older
TorchScript exporter was measured 0.05 off torch's embeddings on all-MiniLM-L6-v2 (it bakes
the attention mask's handling for the traced shape); this one within 2e-7.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

# part of every cache key: a change to how models are exported makes new files
EXPORT_VERSION = 1
# the most an output of the export may differ from torch's on the probe batch
TOLERANCE = 1e-4
# A pass of at least this many (padded) tokens is bulk work (documents seen for the first time,
# a cross-encoder's pairs). With runtime auto it runs on torch: measured on the 2-core machine
# with all-MiniLM-L6-v2, torch's kernels took 0.5-0.7x ONNX Runtime's time from 512 tokens up
# (16x128 tokens: 216 ms against 358), while under 256 tokens torch's per-call overhead makes
# it the slower one (one 16-token query: 6.6 ms against 3.8).
BULK_TOKENS = 1024


class OnnxUnavailable(Exception):
    """The export, its loading or its check failed: the model runs on torch."""


def cache_root() -> Path:
    """Where exports are kept: ``RERANK_SIDECAR_CACHE``, else ``$XDG_CACHE_HOME/rerank-sidecar``
    (``~/.cache/rerank-sidecar``)."""
    own = os.environ.get("RERANK_SIDECAR_CACHE")
    if own:
        return Path(own).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "rerank-sidecar"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """ONNX Runtime's threads for a model: every usable CPU but one, which the event loop keeps."""
    return max(1, usable_cpus() - 1)


def choose(requested: str, device: torch.device) -> str:
    """The runtime a model entry runs on: ``auto`` is ONNX Runtime on a CPU where it is
    installed, torch on CUDA."""
    if requested != "auto":
        return requested
    if device.type != "cpu":
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.warning("onnxruntime is not installed: models on the CPU run on torch (pip install onnxruntime)")
        return "torch"
    return "onnx"


def weights_key(module: torch.nn.Module, settings: str) -> str:
    """A hash of the module's weights (names, shapes, dtypes and bytes), the settings that shape
    its export, the export's version and torch's."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{EXPORT_VERSION}|{torch.__version__}|{settings}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def export(module: torch.nn.Module, probe: Mapping[str, torch.Tensor], output: str, path: Path) -> None:
    """``module(**probe)`` exported to ``path/model.onnx``, every input's first two axes (batch,
    sequence) dynamic. Written beside and moved in whole: a reader never sees half a file, and
    of two processes exporting at once the first to finish wins."""
    from torch.export import Dim

    path.parent.mkdir(parents=True, exist_ok=True)
    batch, sequence = Dim("batch"), Dim("sequence")
    shapes = {name: {0: batch, 1: sequence} for name in probe}
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".export-"))
    try:
        with _quiet():
            torch.onnx.export(
                module,
                (),
                str(tmp / "model.onnx"),
                kwargs=dict(probe),
                input_names=list(probe),
                output_names=[output],
                dynamic_shapes=shapes,
                dynamo=True,
                external_data=True,
                verbose=False,
            )
        try:
            os.replace(tmp, path)
        except OSError:
            if not (path / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines, its optimizer's info logs and its warnings kept out of
    the sidecar's output (a failure still raises, with its message)."""
    chatty = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [lg.level for lg in chatty]
    try:
        for lg in chatty:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), open(os.devnull, "w") as sink, redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(chatty, levels, strict=True):
            lg.setLevel(level)


def is_bulk(batch: Mapping[str, torch.Tensor]) -> bool:
    """Whether a padded batch is bulk work (``BULK_TOKENS`` tokens or more)."""
    return int(batch["input_ids"].numel()) >= BULK_TOKENS


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle pool threads sleep instead of spinning: the event loop needs that core
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An exported model in an ONNX Runtime session on the CPU: ``run`` takes numpy inputs by
    name and returns the one output; the GIL is released while it runs. With ``wide_threads``
    (more than ``threads``), a second session of the same model on that many threads runs the
    passes the caller marks ``wide`` (a search alone, bulk work); ``threads`` runs the rest, the
    short passes of many searches under load, and leaves the event loop its core."""

    def __init__(self, path: Path, threads: int, wide_threads: int | None = None) -> None:
        self.threads = threads
        self.path = path
        self.session = _session(path, threads)
        self.wide = None
        if wide_threads is not None and wide_threads > threads:
            self.wide = _session(path, wide_threads)
        self.wide_threads = wide_threads if self.wide is not None else None
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]], wide: bool = False) -> np.ndarray[Any, Any]:
        """The output for these inputs (int64 token ids, masks, types)."""
        session = self.wide if wide and self.wide is not None else self.session
        out = session.run(None, {name: feeds[name] for name in self.inputs})[0]
        result: np.ndarray[Any, Any] = np.asarray(out)
        return result


def prepared(
    module: torch.nn.Module,
    probe: Mapping[str, torch.Tensor],
    output: str,
    settings: str,
    threads: int | None,
    wide_threads: int | None = None,
) -> OnnxModel:
    """The module on ONNX Runtime: its cached export (made now when there is none), loaded, and
    its output on the probe batch compared with torch's. Raises OnnxUnavailable with the reason
    when any of it fails."""
    try:
        key = weights_key(module, settings)
        path = cache_root() / "onnx" / key
        if not (path / "model.onnx").is_file():
            started = time.perf_counter()
            log.info("exporting the model to ONNX (once for these weights) into %s", path)
            export(module, probe, output, path)
            log.info("exported in %.1f s", time.perf_counter() - started)
        model = OnnxModel(path, threads or default_threads(), wide_threads)
        with torch.inference_mode():
            want = module(**probe).float().numpy()
        feeds = {k: v.numpy() for k, v in probe.items()}
        outputs = [model.run(feeds)]
        if model.wide is not None:  # the same graph on more threads: checked all the same
            outputs.append(model.run(feeds, wide=True))
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise OnnxUnavailable(f"{type(e).__name__}: {first}") from e
    for got in outputs:
        if got.shape != want.shape:
            raise OnnxUnavailable(f"the export's output has shape {got.shape}, torch's {want.shape}")
    diff = max(float(np.abs(got - want).max()) if want.size else 0.0 for got in outputs)
    if not diff <= TOLERANCE:
        raise OnnxUnavailable(
            f"the export differs from torch by {diff:.2e} on the probe batch (> {TOLERANCE})"
        )
    log.info("ONNX Runtime, %d threads, within %.1e of torch on the probe batch", model.threads, diff)
    return model


class Placement:
    """Where an encoder's passes run: with an ONNX Runtime model, its short passes there (and, with
    ``onnx`` rather than ``auto``, its bulk passes too), the rest on torch; without one, all on
    torch, with the reason where ONNX Runtime was asked for. ``runtime`` and ``problem`` are what
    ``/_sidecar/health`` shows of the model."""

    def __init__(self, model: OnnxModel | None = None, requested: str = "torch", problem: str | None = None):
        self.model = model
        self.bulk_on_torch = model is not None and requested == "auto"  # torch's kernels win there
        self.problem = problem

    @property
    def runtime(self) -> str:
        if self.model is None:
            return "torch"
        return "onnx, torch for bulk passes" if self.bulk_on_torch else "onnx"

    def for_batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[OnnxModel | None, bool]:
        """The ONNX Runtime model that runs this padded batch (None: torch does), and whether
        it is bulk work."""
        bulk = is_bulk(batch)
        return (None if bulk and self.bulk_on_torch else self.model), bulk


class Placed:
    """An encoder backend with a ``placement``: what ``/_sidecar/health`` reads of it."""

    placement: Placement

    @property
    def runtime(self) -> str:
        return self.placement.runtime

    @property
    def runtime_problem(self) -> str | None:
        """Why not ONNX Runtime, where it was asked for."""
        return self.placement.problem


def place(
    name: str,
    requested: str,
    device: torch.device,
    prepare: Callable[[], tuple[torch.nn.Module, Mapping[str, torch.Tensor], str, str]],
    threads: int | None,
) -> Placement:
    """A model entry's placement: where ``runtime`` (``requested``) picks ONNX Runtime, the
    module, probe batch, output name and settings that ``prepare`` gives, ``prepared`` on
    ``threads`` (and a second session on every CPU); where that fails, torch, logged with why."""
    if choose(requested, device) != "onnx":
        return Placement()
    try:
        module, probe, output, settings = prepare()
        return Placement(prepared(module, probe, output, settings, threads, usable_cpus()), requested)
    except OnnxUnavailable as e:
        problem = f"ONNX Runtime not used: {e}"
        log.warning("model %s runs on torch: %s", name, problem)
        return Placement(problem=problem)
