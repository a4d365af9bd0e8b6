"""rerank-sidecar: a reranking proxy in front of OpenSearch and Elasticsearch.

Commands: init, serve, demo, tui, eval, judgments, rerank, bench, check-config
(``rerank-sidecar COMMAND --help``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.logs import setup_logging
from sidecar.masking import mask_url

if TYPE_CHECKING:
    from sidecar.config import Config

# Each command imports what it needs when it runs: ``--version`` and ``--help`` stay quick.


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _override(config: Config, args: argparse.Namespace) -> Config:
    update: dict[str, Any] = {}
    if getattr(args, "listen", None):
        update["listen"] = args.listen
    if getattr(args, "upstream", None):
        update["upstream"] = config.upstream.model_copy(update={"url": args.upstream.rstrip("/")})
    if getattr(args, "admin_listen", None):
        update["admin"] = config.admin.model_copy(update={"listen": args.admin_listen})
    if not update:
        return config
    from sidecar.config import parse_config

    return parse_config({**config.model_dump(), **{k: _dump(v) for k, v in update.items()}})


def _dump(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file: exit 0, or 2 with one line naming the key path."""
    from sidecar.config import ConfigError, is_loopback, load_config, parse_listen

    file = args.config_file or args.file
    if file is None:
        print("rerank-sidecar check-config: which file? check-config --config FILE", file=sys.stderr)
        return 2
    config = load_config(file)
    from sidecar.rewrite.load import compile_rewriters

    compile_rewriters(config, Path(file).parent)
    host, _ = parse_listen(config.admin.listen)
    if not is_loopback(host) and not (config.admin.token or config.admin.token_env):
        # what serve refuses (a token_env is read when it starts: it need not be set here)
        raise ConfigError(
            f"admin.listen: {config.admin.listen} is not loopback; set admin.token or admin.token_env"
        )
    for key, value in (
        ("tls.certfile", config.tls.certfile if config.tls else None),
        ("tls.keyfile", config.tls.keyfile if config.tls else None),
        ("tls.ca_certs", config.tls.ca_certs if config.tls else None),
        ("upstream.ca_certs", config.upstream.ca_certs),
    ):
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"{key}: {value} is not a readable file")
    print(f"{file}: ok ({len(config.models)} models, {len(config.routes)} routes)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the proxy and the admin API until interrupted."""
    from sidecar.config import load_config
    from sidecar.server import SidecarServer, settle_heap

    path = Path(args.config)
    config = _override(load_config(path), args)
    setup_logging(config.log_level, config.log_format)
    server = SidecarServer(config, config_path=path, reload=lambda: _override(load_config(path), args))

    async def main() -> None:
        task = asyncio.ensure_future(server.serve(install_signals=True))
        ready = asyncio.ensure_future(server.ready.wait())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        if not server.ready.is_set():  # it failed to start: the error, not a wait for ever
            ready.cancel()
            return task.result()
        settle_heap()
        logging.getLogger("sidecar").info(
            "proxy on %s -> %s, admin on %s",
            server.proxy_url,
            mask_url(config.upstream.url),
            server.admin_url,
        )
        await task

    _run(main())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start osmem-server with the demo corpus and the sidecar in front of it."""
    from sidecar.demo.run import run_demo

    setup_logging("warning")
    _run(run_demo(args))
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    """Watch and tune running sidecars in the terminal, through their admin API."""
    import os

    from tui.app import run

    token = args.token or os.environ.get(args.token_env) or None
    run(args.admin or ["http://127.0.0.1:9301"], token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from sidecar import __version__

    parser = argparse.ArgumentParser(
        prog="rerank-sidecar", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"rerank-sidecar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the reranking proxy")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--listen", help="override listen (host:port)")
    p.add_argument("--upstream", help="override upstream.url")
    p.add_argument("--admin-listen", help="override admin.listen (host:port)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tui", help="the terminal UI: live feed, diffs, distribution, tuning, sandbox")
    p.add_argument(
        "--admin", action="append", help="a sidecar's admin URL (repeat for several; default 127.0.0.1:9301)"
    )
    p.add_argument("--token", help="admin bearer token (default: the env var named by --token-env)")
    p.add_argument("--token-env", default="RERANK_SIDECAR_ADMIN_TOKEN", help="env var holding the token")
    p.set_defaults(func=cmd_tui)

    from sidecar.batch import add_parser as add_rerank
    from sidecar.eval.command import add_parser as add_eval
    from sidecar.experiments.judgments import add_parser as add_judgments
    from sidecar.init import add_parser as add_init
    from sidecar.sizing import add_parser as add_bench

    add_init(sub)
    add_bench(sub)
    add_eval(sub)
    add_rerank(sub)
    add_judgments(sub)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file", nargs="?", help="the config file (or --config FILE, as serve takes it)")
    p.add_argument("--config", dest="config_file", help="the config file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="embedded demo: osmem-server, a demo corpus, the sidecar on CPU")
    p.add_argument("--config", help="demo config (default: configs/demo.yaml of this checkout)")
    p.add_argument("--listen", default=None, help="proxy address (default from the config)")
    p.add_argument("--admin-listen", default=None, help="admin address (default from the config)")
    p.add_argument("--index", default="kb", help="index that holds the demo corpus")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors end in one line on stderr and a non-zero exit."""
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:  # without building every parser
        from sidecar import __version__

        print(f"rerank-sidecar {__version__}")
        return 0
    args = build_parser().parse_args(argv)
    from sidecar.config import ConfigError

    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"rerank-sidecar: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
