"""The YAML config: frozen pydantic models, loading and validation with key-path errors."""

from __future__ import annotations

import ipaddress
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from sidecar.config.rewrite import RewriteConfig
from sidecar.language import ANY, Reads, default_languages, key_of, keyed
from sidecar.remote_apis import APIS


def check_identity(spec: str) -> str:
    """One identity source as configured: ``ubi.client_id``, ``header:NAME`` or ``cookie:NAME``."""
    if spec == "ubi.client_id":
        return spec
    kind, _, name = spec.partition(":")
    if kind in ("header", "cookie") and name.strip():
        return f"{kind}:{name.strip()}"
    raise ValueError(f"{spec!r}: expected ubi.client_id, header:NAME or cookie:NAME")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9200`` for IPv6) into host and port."""
    m = re.fullmatch(r"\[(?P<h6>[^\]]+)\]:(?P<p6>\d+)|(?P<h>[^:\[\]]+):(?P<p>\d+)", value.strip())
    if not m:
        raise ValueError(f"expected host:port, got {value!r}")
    host = m.group("h6") or m.group("h")
    port = int(m.group("p6") or m.group("p"))
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    return host, port


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


def _base_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


class UpstreamConfig(_Model):
    """The real cluster the sidecar stands in front of."""

    url: str = "http://127.0.0.1:9201"
    timeout_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    verify: bool = True
    ca_certs: str | None = None
    max_connections: int = Field(256, ge=1)
    max_keepalive: int = Field(64, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _base_url(v)


class AdminConfig(_Model):
    """The admin listener."""

    listen: str = "127.0.0.1:9301"
    token: str | None = None
    token_env: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return _check_listen(v)


class CalibrationConfig(_Model):
    """A raw score mapped to [0, 1] as ``sigmoid((raw - center) / scale)``."""

    center: float
    scale: float = Field(gt=0)


REMOTE_APIS = tuple(APIS)
LOCAL_BACKENDS = ("qwen3", "cross-encoder", "bi-encoder")
_BACKENDS = (*LOCAL_BACKENDS, "remote")


class _ModelBase(_Model):
    """What every model entry has, local or remote."""

    # the model's raw score mapped to [0, 1] (0.5: as likely relevant as not); default: none for
    # qwen3, cross-encoders and remote engines (probabilities already), for bi-encoders the
    # shipped fit of the model, else a generic cosine fit; `eval --tune` fits one
    calibration: CalibrationConfig | None = None
    # (model, instruction, query, document) scores kept in memory (0: no cache)
    cache_size: int = Field(50_000, ge=0)
    # requests waiting for the model at most; past it (or past their budget) they fall back at once
    max_queue: int = Field(256, ge=1)
    # circuit breaker: after this many errors in a row the model is skipped (0: never)
    circuit_failures: int = Field(5, ge=0)
    circuit_cooldown_s: float = Field(30.0, gt=0)  # then one search probes it
    # the languages it reads (ISO 639-1 codes, script names, or any); default: what the model
    # is known to read (language.default_languages): any for remote engines and Qwen3, en for
    # all-MiniLM-L6-v2 and the ms-marco cross-encoders
    languages: list[str] | None = Field(None, min_length=1)

    @field_validator("languages", mode="before")
    @classmethod
    def _languages_any(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for code in v:
                if code != ANY:
                    key_of(code)
        return v

    @property
    def reads(self) -> Reads:
        """What the model reads, as the language step asks it."""
        backend = getattr(self, "backend", "remote")
        langs = self.languages or default_languages(backend, getattr(self, "model", None))
        return Reads.of(langs)

    @model_validator(mode="before")
    @classmethod
    def _keys_of_the_other_kind(cls, data: Any) -> Any:
        if isinstance(data, dict):
            mine = cls.model_fields
            other = RemoteModel if cls is LocalModel else LocalModel
            for key in data:
                if key not in mine and key in other.model_fields:
                    kind = "backend remote" if other is RemoteModel else "local backends"
                    raise ValueError(f"{key}: only for {kind}")
        return data


class LocalModel(_ModelBase):
    """A model that runs in the sidecar, on its own inference thread behind the batcher."""

    backend: Literal["qwen3", "cross-encoder", "bi-encoder"]
    model: str  # the weights: a hub id or a folder
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # tokens per (query, document) input; default: 8192 for qwen3, the tokenizer's limit otherwise
    max_length: int | None = Field(None, ge=16, le=131072)
    # padded tokens per forward pass: the batcher fills batches up to this budget
    batch_tokens: int = Field(16384, ge=64)
    # qwen3, cross-encoder: run each batch as one packed sequence (no padding). auto: qwen3 where
    # flash-attention's varlen kernels are (CUDA with flash-attn installed), padded elsewhere;
    # on: always (a block-diagonal mask where there is no varlen kernel: same scores, more memory)
    packing: Literal["auto", "on", "off"] = "auto"
    # how long the first request of a batch waits for others to join it; default: 2 for pair
    # backends (qwen3, cross-encoders), 0 for bi-encoders (a query's forward is short: the
    # searches that arrive while one runs make the next pass together, and one search alone
    # waits for nobody)
    max_wait_ms: float | None = Field(None, ge=0, le=1000)
    # documents past max_length: cut, or split into overlapping chunks scored by the best one;
    # default: chunk for bi-encoders (cheap: one embedding per chunk, cached), truncate otherwise
    long_docs: Literal["truncate", "chunk"] | None = None
    # tokens per chunk (default 512; 128 for bi-encoders, whose models were trained on short
    # passages: each chunk also carries the document's first line, its title) and chunks at most
    # (default 8; 16 for bi-encoders)
    chunk_tokens: int | None = Field(None, ge=16)
    max_chunks: int | None = Field(None, ge=1, le=256)
    # cross-encoder: which label's probability is the score (a name or an index); default: the single logit
    label: str | int | None = None
    # bi-encoder: texts per forward pass
    batch_size: int = Field(32, ge=1, le=4096)
    # bi-encoder: a SQLite file that keeps document embeddings across restarts
    embedding_store: str | None = None
    # bi-encoder, cross-encoder: what runs the forward passes. auto: on a CPU, ONNX Runtime for
    # passes under 1,024 tokens (an export made once from these weights, cached, checked against
    # torch at every load; torch where it fails) and torch for bulk ones; on CUDA, torch. onnx:
    # ONNX Runtime for every pass. qwen3 always runs on torch
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    # ONNX Runtime's threads for this model; default: the CPUs this process may use, less one
    # (the event loop keeps a core), at least one; bulk passes (1,024 tokens or more) and a
    # bi-encoder's pass of one search alone run on every CPU
    threads: int | None = Field(None, ge=1, le=256)

    @model_validator(mode="after")
    def _long_docs_default(self) -> LocalModel:
        bi = self.backend == "bi-encoder"
        if self.long_docs is None:
            object.__setattr__(self, "long_docs", "chunk" if bi else "truncate")
        if self.chunk_tokens is None:
            object.__setattr__(self, "chunk_tokens", 128 if bi else 512)
        if self.max_chunks is None:
            object.__setattr__(self, "max_chunks", 16 if bi else 8)
        if self.max_wait_ms is None:
            object.__setattr__(self, "max_wait_ms", 0.0 if bi else 2.0)
        if self.runtime == "onnx":
            if self.backend == "qwen3":
                raise ValueError("runtime: onnx is for bi-encoders and cross-encoders; qwen3 runs on torch")
            if self.device.startswith("cuda"):
                raise ValueError("runtime: onnx runs on the CPU: leave device auto or set it to cpu")
            if self.packing == "on":
                raise ValueError("packing: on is a torch feature: set runtime: torch or packing: auto")
        return self


class RemoteModel(_ModelBase):
    """A serving engine's rerank API at url (or spread over urls)."""

    backend: Literal["remote"]
    api: str  # one of REMOTE_APIS (sidecar/remote_apis.py)
    model: str | None = None  # the name the server expects, if any
    url: str | None = None
    urls: list[str] | None = None
    api_key_env: str | None = None  # env var holding the bearer key (cohere; any API behind a gateway)
    headers: dict[str, str] = Field(default_factory=dict)  # extra headers, not secret
    headers_env: dict[str, str] = Field(default_factory=dict)  # header name -> env var holding its value
    extra_body: dict[str, Any] = Field(default_factory=dict)  # merged into every request body
    # documents per request at most; default: 32 for tei (its --max-client-batch-size), else 100
    max_docs_per_request: int | None = Field(None, ge=1, le=10_000)
    max_concurrency: int = Field(16, ge=1, le=1024)  # requests in flight to the servers
    request_timeout_s: float = Field(10.0, gt=0)  # per request, and never past the route's budget
    retries: int = Field(1, ge=0, le=10)  # on connection errors only, on the next URL
    cooldown_s: float = Field(10.0, ge=0)  # a URL that failed is skipped this long

    @model_validator(mode="before")
    @classmethod
    def _api_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("api") is None:
            raise ValueError(f"api: required for backend remote (one of {', '.join(REMOTE_APIS)})")
        return data

    @field_validator("api")
    @classmethod
    def _api(cls, v: str) -> str:
        if v not in APIS:
            raise ValueError(f"{v!r} is not one of {', '.join(REMOTE_APIS)}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _base_url(v)

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("at least one URL is required")
        return [_base_url(u) for u in v]

    @model_validator(mode="after")
    def _servers(self) -> RemoteModel:
        if (self.url is None) == (self.urls is None):
            raise ValueError("url or urls: exactly one is required for backend remote")
        if APIS[self.api].needs_model_and_key and (self.model is None or self.api_key_env is None):
            raise ValueError(f"api {self.api}: model and api_key_env are required")
        return self

    @property
    def remote_urls(self) -> list[str]:
        """The servers of a remote model."""
        return self.urls or ([self.url] if self.url else [])


# one model entry of `models`: which class is told by its backend key
ModelConfig = Annotated[LocalModel | RemoteModel, Field(discriminator="backend")]
_MODEL = TypeAdapter(ModelConfig)


def model_entry(data: Any) -> LocalModel | RemoteModel:
    """A model entry from its mapping (ConfigError naming the key when it is wrong)."""
    try:
        return _MODEL.validate_python(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


# the model's share of the fused score when fusion_alpha is not set
AUTO_ALPHA = 0.6
LINEAR_ALPHA = 0.5

# what an experiment arm may set differently from its route (the window and retrieval stay
# shared: one cluster call serves both arms)
ARM_KEYS = (
    "model",
    "fusion",
    "fusion_alpha",
    "rrf_k",
    "instruction",
    "min_score",
    "relative_to_top",
    "max_drop",
    "max_hits",
)


class ExperimentConfig(_Model):
    """An online experiment on a route's searches, judged by users' clicks (UBI events)."""

    name: str | None = Field(None, min_length=1, max_length=200)  # default: the route's name
    # shadow: serve control, score and record treatment too; ab: a share of users get
    # treatment; interleave: one team-draft list of both arms per search
    mode: Literal["shadow", "ab", "interleave"]
    # an arm: the cluster's order, the route as configured, or the route with some of
    # ARM_KEYS changed (another model, another fusion, ...)
    control: Literal["cluster", "route"] | dict[str, Any] = "cluster"
    treatment: Literal["cluster", "route"] | dict[str, Any] = "route"
    share: float = Field(0.5, gt=0, lt=1)  # ab: the share of users in treatment
    # where the user's identity is read, first found wins: ubi.client_id, header:NAME, cookie:NAME
    identity: list[str] = Field(default_factory=lambda: ["ubi.client_id"], min_length=1)
    level: float = Field(0.05, gt=0, lt=0.5)  # the test's level: intervals are 1 - level
    # serve control to everyone once treatment loses at guardrail_p (checked continuously,
    # so stricter than level) after min_queries decided queries
    stop_if_losing: bool = False
    guardrail_p: float = Field(0.01, gt=0, lt=0.5)
    min_queries: int = Field(50, ge=1)
    # what one identity can weigh: searches it counts for, clicks it counts (past them it is
    # served as usual and not counted), so a few forged users cannot move the figures
    max_searches_per_identity: int = Field(500, ge=1)
    max_clicks_per_identity: int = Field(200, ge=1)

    @field_validator("identity")
    @classmethod
    def _identity(cls, v: list[str]) -> list[str]:
        return [check_identity(s) for s in v]

    @field_validator("control", "treatment")
    @classmethod
    def _arm(cls, v: Any) -> Any:
        if isinstance(v, dict):
            unknown = sorted(set(v) - set(ARM_KEYS))
            if unknown:
                raise ValueError(f"{unknown[0]}: an arm may set only {', '.join(ARM_KEYS)}")
            if not v:
                raise ValueError("an arm mapping needs at least one of " + ", ".join(ARM_KEYS))
        return v

    @model_validator(mode="after")
    def _two_arms(self) -> ExperimentConfig:
        if self.control == self.treatment and self.mode != "interleave":
            raise ValueError("control and treatment are the same arm (an A/A test: use mode interleave)")
        return self


class WarmupConfig(_Model):
    """Documents of a route's indices scored at start, in the background: a bi-encoder keeps
    their embeddings, so the first searches do not wait for them (other models gain nothing)."""

    documents: int = Field(1000, ge=1, le=10_000)  # the first this many of the indices (match_all)
    basic_auth_env: str | None = None  # env var holding user:password to read them with


class RouteConfig(_Model):
    """Which indices are reranked, with which model and how."""

    # what events, previews and the admin API call the route; default (null): its index patterns
    name: str = Field(min_length=1, max_length=200)
    indices: list[str] = Field(min_length=1)
    model: str
    window: int = Field(100, ge=1, le=10_000)
    fields: list[str] = Field(min_length=1)
    # where the query text is looked for: the clause that searches these fields (default: fields)
    query_fields: list[str] | None = None
    template: str | None = None
    timeout_ms: int = Field(2000, ge=1)
    query_path: str | None = None
    # the reranker's instruction (qwen3); the request header X-Rerank-Instruction overrides it
    instruction: str | None = None
    annotate: bool = True
    max_chars: int = Field(4000, ge=16)
    warmup: WarmupConfig | None = None  # documents embedded at start (bi-encoder), in the background
    # thresholds on the model's score, applied to the reranked window before paging
    min_score: float | None = None
    relative_to_top: float | None = Field(None, gt=0, le=1)
    max_drop: float | None = Field(None, gt=0)
    max_hits: int | None = Field(None, ge=1)
    # how the final order is made: auto (alpha x the model's score + (1 - alpha) x the cluster's
    # rank as rrf_k / (rrf_k + rank), the cluster counting as far as it can tell: fully when it
    # picked the window from more hits, n/rrf_k when the window holds all n of its hits, not at
    # all when its scores are all equal), the model's score alone (replace), a blend with the
    # cluster's min-max normalized score (linear), or plain reciprocal rank fusion (rrf)
    fusion: Literal["auto", "replace", "linear", "rrf"] = "auto"
    # the model's share in auto and linear; default: 0.6 for auto (chosen on SciFact's tuning
    # half, see docs/configuration.md), 0.5 for linear
    fusion_alpha: float | None = Field(None, ge=0, le=1)
    rrf_k: int = Field(60, ge=1)
    # a search whose query is in a language the route's model does not read (language.py: told
    # by its script) is reranked by the model named here for that language (zh: qwen3), else
    # answered in the cluster's order (reason language); null: every search to the route's model
    models_by_language: dict[str, str] = Field(default_factory=dict)
    # diagnostics on the model's calibrated scores (in [0, 1] for every backend): flat when the
    # top diagnostic_top scores hardly differ (a too-broad query), low when even the best
    # candidate is less likely relevant than not (vague query, or weak document text)
    diagnostic_top: int = Field(10, ge=1)
    flat_std: float = Field(0.05, ge=0)
    low_score: float = Field(0.5, ge=0, le=1)
    low_mean: float | None = Field(None, ge=0, le=1)  # also low when the top scores' mean is under it
    # query rewriting: rules, variants, and how retrieval and reranking use them
    rewrite: RewriteConfig | None = None
    # an online experiment on this route's searches (hot-reloadable)
    experiment: ExperimentConfig | None = None

    @property
    def alpha(self) -> float:
        """The model's share in ``auto`` and ``linear`` fusion."""
        if self.fusion_alpha is not None:
            return self.fusion_alpha
        return AUTO_ALPHA if self.fusion == "auto" else LINEAR_ALPHA

    @field_validator("models_by_language")
    @classmethod
    def _by_language(cls, v: dict[str, str]) -> dict[str, str]:
        return keyed(v, told=True)

    @model_validator(mode="after")
    def _arm_routes(self) -> RouteConfig:
        if self.experiment is not None:
            for side in ("control", "treatment"):
                arm = getattr(self.experiment, side)
                if isinstance(arm, dict):
                    try:
                        RouteConfig.model_validate({**self.model_dump(exclude={"experiment"}), **arm})
                    except ValidationError as e:
                        raise ValueError(f"experiment.{side}.{format_validation_error(e)}") from None
        return self

    def arm(self, side: str) -> RouteConfig | None:
        """The route as an experiment arm runs it (None for the cluster's order)."""
        assert self.experiment is not None
        arm = getattr(self.experiment, side)
        if arm == "cluster":
            return None
        if arm == "route":
            return self
        return self.model_copy(update={**arm, "experiment": None})

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("indices"), list):
            return {**data, "name": ",".join(str(i) for i in data["indices"])}
        return data

    @model_validator(mode="after")
    def _template_fields(self) -> RouteConfig:
        if self.template is not None:
            try:
                names = [n for _, n, _, _ in string.Formatter().parse(self.template) if n is not None]
            except ValueError as e:
                raise ValueError(f"template: {e}") from None
            for name in names:
                if name not in self.fields:
                    raise ValueError(f"template: placeholder {{{name}}} is not one of fields {self.fields}")
        return self


class EventsConfig(_Model):
    """Where search events are kept."""

    sqlite: str | None = None  # a file path; none: memory only
    buffer: int = Field(2000, ge=10)  # newest events kept in memory
    max_events: int = Field(100_000, ge=100)  # rows kept in SQLite
    max_age_days: float = Field(30.0, gt=0)
    # also bulk-index events into this OpenSearch index (of the upstream cluster unless url is set)
    index: str | None = None
    url: str | None = None
    basic_auth_env: str | None = None  # env var holding user:password for that cluster
    # keep no query or document text in events (memory, SQLite, the index, the live stream): for
    # clusters whose document- or field-level security must not be copied out of them
    redact: bool = False
    # characters an event keeps of the query, of each variant and of each title (as OpenSearch's
    # slow log keeps 1,000 of a source); the memory buffer is also bounded by bytes
    max_text_chars: int = Field(1000, ge=16)
    buffer_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)


class TlsConfig(_Model):
    """TLS on the sidecar's own listeners (proxy and admin)."""

    certfile: str  # PEM: the certificate (chain)
    keyfile: str  # PEM: its private key
    ca_certs: str | None = None  # require client certificates signed by this CA (mutual TLS)


class UbiConfig(_Model):
    """User Behavior Insights: where clicks come from and whether the sidecar logs queries."""

    # writes of UBI events to this index (/{index}/_doc, _create, _bulk) are read as they pass
    events_index: str = "ubi_events"
    click_actions: list[str] = Field(default_factory=lambda: ["click"], min_length=1)
    # write a ubi_queries record for each search the sidecar reranks (the UBI plugin's job,
    # for clusters without it), into this index of the upstream cluster
    write_queries: bool = False
    queries_index: str = "ubi_queries"
    # served lists kept to match clicks to; the oldest go first
    max_pending: int = Field(20_000, ge=100)
    # a click counts for an experiment only this long after its search
    click_window_s: float = Field(3600.0, gt=0)
    # env var holding the key the sidecar signs the query ids it issues with (the same on every
    # sidecar of a fleet, so any of them can tell a forged id); unset: a key of this process
    query_id_key_env: str | None = None


class CacheConfig(_Model):
    """A score cache that every sidecar of a fleet shares: Valkey or Redis."""

    url: str  # redis://host:6379/0, rediss:// for TLS (a password in it, or in password_env)
    password_env: str | None = None
    ttl_s: int = Field(7 * 86400, ge=1)  # how long a score is kept
    prefix: str = "rerank-sidecar:"
    timeout_ms: float = Field(50.0, gt=0)  # a lookup slower than this scores as if missing
    retry_s: float = Field(5.0, ge=0)  # after a failure the cache is skipped this long

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(redis|rediss|unix)://", v):
            raise ValueError(f"expected a redis://, rediss:// or unix:// URL, got {v!r}")
        return v


class LimitsConfig(_Model):
    """What one client may take of the proxy listener (and the admin one): every size and wait
    bounded, as OpenSearch's http.* settings, nginx's client_* and Envoy's timeouts do."""

    # request line and headers together (OpenSearch's http.max_header_size): 431 past it
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    # from a connection's first byte (or a keep-alive request's) to its last header: 408 past it
    header_timeout_s: float = Field(10.0, gt=0)
    # the longest pause between two reads of a request body: 408 past it
    body_timeout_s: float = Field(60.0, gt=0)
    # an idle keep-alive connection is closed after this long
    keep_alive_s: float = Field(75.0, gt=0)
    # open connections per listener; a connection past it gets 503 and is closed (the soft limit
    # of open files is raised to the hard one at start, and this is kept under it)
    max_connections: int = Field(4096, ge=1)
    # JSON nesting an intercepted body may have (deeper: passed to the cluster unparsed)
    max_json_depth: int = Field(100, ge=4, le=1000)
    # query text the sidecar reranks at most (a model reads a few hundred tokens; a longer one
    # goes to the cluster as it came)
    max_query_chars: int = Field(10_000, ge=100)
    # _msearch sub-searches reranked per request; the rest are answered in the cluster's order
    max_reranked_subsearches: int = Field(20, ge=1)


class ConfigStoreConfig(_Model):
    """Where a fleet of sidecars keeps its one config: a document of an OpenSearch index."""

    index: str = Field(".rerank-sidecar-config", min_length=1)
    document: str = Field("config", min_length=1)  # one id per fleet: several fleets may share a cluster
    url: str | None = None  # the store's cluster; default: the upstream
    basic_auth_env: str | None = None  # env var holding user:password for it
    interval_s: float = Field(5.0, gt=0, le=3600)  # how often each sidecar reads it
    # env var holding the key the stored document is signed with (HMAC-SHA256): every sidecar of
    # the fleet has it, whoever else writes the document is refused
    key_env: str = Field("RERANK_SIDECAR_CONFIG_KEY", min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _base_url(v)


class TracingConfig(_Model):
    """OpenTelemetry traces, exported over OTLP/HTTP (read at start: a change needs a restart)."""

    # the collector's OTLP/HTTP address (http://collector:4318); /v1/traces is added when absent
    endpoint: str = Field(min_length=1)
    # the share of new traces recorded; a client's traceparent decides for the traces it starts
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    service_name: str = Field("rerank-sidecar", min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return _base_url(v)


class Config(_Model):
    """The whole sidecar config."""

    listen: str = "127.0.0.1:9200"
    upstream: UpstreamConfig = UpstreamConfig()
    admin: AdminConfig = AdminConfig()
    events: EventsConfig = EventsConfig()
    tls: TlsConfig | None = None  # https on the listeners; none: plain http
    ubi: UbiConfig = UbiConfig()
    # a fleet's shared config (models, routes, limits): see sidecar/fleet/config_store.py
    config_store: ConfigStoreConfig | None = None
    # a second tier of the score cache that the fleet shares (Valkey/Redis); models' cache_size
    # stays the in-process tier in front of it
    cache: CacheConfig | None = None
    limits: LimitsConfig = LimitsConfig()
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list)
    max_search_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # any request body past this is refused with 413 (OpenSearch's http.max_content_length default)
    max_request_body_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # json: one object a line (time, level, logger, message; the trace and span ids, the route
    # and the reason where the line is about a search), for a log pipeline; text: for people
    log_format: Literal["text", "json"] = "text"
    tracing: TracingConfig | None = None  # OpenTelemetry traces; none: off

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return _check_listen(v)

    def used_models(self) -> set[str]:
        """The models some route (or an experiment arm of one) scores with."""
        used = {r.model for r in self.routes}
        used |= {m for r in self.routes for m in r.models_by_language.values()}
        for r in self.routes:
            if r.experiment is not None:
                used |= {a.model for a in (r.arm("control"), r.arm("treatment")) if a is not None}
        return used

    @model_validator(mode="after")
    def _routes_name_models(self) -> Config:
        seen: dict[str, int] = {}
        for i, route in enumerate(self.routes):
            if route.model not in self.models:
                known = ", ".join(sorted(self.models)) or "none defined"
                raise ConfigError(f"routes.{i}.model: unknown model {route.model!r} (models: {known})")
            if route.name in seen:
                raise ConfigError(
                    f"routes.{i}.name: {route.name!r} is the name of routes.{seen[route.name]} too:"
                    " give one a name"
                )
            seen[route.name] = i
            if route.experiment is not None:
                for side in ("control", "treatment"):
                    arm = route.arm(side)
                    if arm is not None and arm.model not in self.models:
                        raise ConfigError(f"routes.{i}.experiment.{side}.model: unknown model {arm.model!r}")
            for language, model in route.models_by_language.items():
                if model not in self.models:
                    known = ", ".join(sorted(self.models))
                    raise ConfigError(
                        f"routes.{i}.models_by_language.{language}: unknown model {model!r} (models: {known})"
                    )
        names = [r.experiment.name or r.name for r in self.routes if r.experiment is not None]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"experiment {name!r} is on two routes: give one a name")
        return self


def format_validation_error(err: ValidationError) -> str:
    """The first error of a validation as ``key.path: problem (got value)``."""
    first = err.errors()[0]
    # a model entry's errors carry its backend (the union's tag) in their path: it is no key
    loc = [
        p
        for i, p in enumerate(first["loc"])
        if not (p in _BACKENDS and i and first["loc"][i - 1] != "backend")
    ]
    path = ".".join(str(p) for p in loc)
    if first["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return f"{path}.backend: required, one of {', '.join(_BACKENDS)}" + (
            f" (got {first['ctx']['tag']!r})" if first["type"] == "union_tag_invalid" else ""
        )
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key"
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if first["type"] == "missing":
        return f"{path}: required key is missing"
    value = first.get("input")
    shown = (
        ""
        if isinstance(value, (dict, list)) or value is None or first["type"] == "value_error"
        else f" (got {value!r})"
    )
    return f"{path}: {msg}{shown}" if path else f"{msg}{shown}"


def parse_config(data: Any) -> Config:
    """Validate a parsed YAML document; raise ConfigError with a one-line message."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the config must be a mapping at the top level, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ConfigError:
        raise
    except ValidationError as e:
        cause = next((x.get("ctx", {}).get("error") for x in e.errors() if x.get("ctx")), None)
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(format_validation_error(e)) from None


def _read_yaml(p: Path) -> Any:
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{p}: invalid YAML{where}: {problem}") from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    return parse_config(_read_yaml(Path(path)))


def check_reload(path: str | Path, running: Config) -> None:
    """Refuse a changed config file that looks half-written: empty, or valid YAML that has lost
    every route the running config has without saying ``routes: []`` (a save cut short before
    ``routes:``). The running config then stays."""
    p = Path(path)
    data = _read_yaml(p)
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{p}: empty (a save under way, or cut short?): not applied")
    if running.routes and "routes" not in data:
        raise ConfigError(
            f"{p}: has no routes key, which would drop all {len(running.routes)} routes"
            " (a save cut short?): not applied; write routes: [] to remove every route"
        )
