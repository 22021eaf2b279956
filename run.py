"""Entry point: parse options, wire storage, model host, dialogue manager and UI, and serve the page."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from assistant.loader import DEFAULT_MODEL, ModelSpec, Quant

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def default_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("local-assistant", appauthor=False))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A local multimodal chat assistant (text, images, voice).")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"Hugging Face model id or local folder (default {DEFAULT_MODEL})")
    parser.add_argument(
        "--quant",
        choices=[q.value for q in Quant],
        default=Quant.AUTO.value,
        help="auto: nf4 4-bit on CUDA, none on CPU (default auto)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="use a tiny built-in model with random weights (offline; answers are meaningless)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="where conversations, files and the demo model live")
    parser.add_argument("--db", default=None, help="SQLAlchemy database URL (default: SQLite in the data dir)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--allowed-hosts",
        default=os.environ.get("ASSISTANT_ALLOWED_HOSTS", ""),
        help="comma-separated extra host names the page may be reached as (besides loopback and --host), "
        "e.g. a LAN name; requests for any other Host header are refused (or set ASSISTANT_ALLOWED_HOSTS)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="longest answer, in tokens")
    parser.add_argument(
        "--auth",
        default=os.environ.get("ASSISTANT_AUTH"),
        help="USER:PASSWORD login, required when --host is not a loopback address (or set ASSISTANT_AUTH)",
    )
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SystemExit("error: --auth must look like USER:PASSWORD")
    return user, password


def open_repository(data_dir: Path, db_url: str | None):
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    blobs = BlobStore(data_dir / "files")
    return ConversationRepository(open_database(db_url or sqlite_url(data_dir / "conversations.sqlite3")), blobs), blobs


def exchange(argv: list[str]) -> int:
    """`run.py export --out FILE.zip [--conversation ID]…` and `run.py import FILE`."""
    parser = argparse.ArgumentParser(prog="run.py", description="Export or import conversations.")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write conversations (all, or those named) to a zip")
    export.add_argument("--out", type=Path, required=True, help="the zip file to write")
    export.add_argument("--conversation", action="append", help="a conversation id (repeat for several; default all)")
    imported = commands.add_parser("import", help="read a zip from this app, or ChatGPT's / Open WebUI's export")
    imported.add_argument("file", type=Path)
    for sub in (export, imported):
        sub.add_argument("--data-dir", type=Path, default=None, help="as for the app")
        sub.add_argument("--db", default=None, help="as for the app")
    args = parser.parse_args(argv)

    from domain.errors import AssistantError
    from storage.exchange import export_zip, read_archive

    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    repository, _ = open_repository(data_dir, args.db)
    try:
        if args.command == "export":
            conversations = repository.export_conversations(args.conversation)
            export_zip(conversations, args.out)
            print(f"Exported {len(conversations)} conversation(s) to {args.out}.")
        else:
            if not args.file.is_file():
                raise SystemExit(f"error: {args.file} does not exist")
            conversations, summary = read_archive(args.file.read_bytes())
            repository.import_conversations(conversations)
            print(summary.sentence())
    except AssistantError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["export"], ["import"]):
        return exchange(argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    auth = parse_auth(args.auth)
    if not is_loopback(args.host) and auth is None:
        raise SystemExit(
            f"error: --host {args.host} makes the app reachable from other machines; "
            "give a login with --auth USER:PASSWORD (or ASSISTANT_AUTH)."
        )

    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(data_dir / "uploads"))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # a local assistant sends nothing anywhere

    import gradio as gr

    from assistant.demo_model import ensure_demo_model, is_demo_checkpoint
    from assistant.dialogue import DialogueManager
    from assistant.engine import DEFAULT_MAX_NEW_TOKENS
    from assistant.loader import load_engine
    from assistant.media import MediaLoader
    from assistant.model_host import ModelHost
    from assistant.turn_queue import TurnQueue
    from domain import limits
    from ui import security
    from ui.app import build_app
    from ui.uploads import clear_stale_uploads

    repository, blobs = open_repository(data_dir, args.db)
    stale = clear_stale_uploads(data_dir / "uploads")
    if stale:
        logging.info("deleted %d upload(s) an earlier run left unsent", stale)
    interrupted = repository.mark_interrupted()
    if interrupted:
        logging.info("kept %d answer(s) that an earlier run left unfinished", interrupted)

    demo = args.demo or is_demo_checkpoint(Path(args.model).expanduser())
    max_new_tokens = args.max_new_tokens or (64 if demo else DEFAULT_MAX_NEW_TOKENS)

    def load(progress):
        source = args.model
        if args.demo:
            progress("Building the demo model (first start only)…", None)
            source = str(ensure_demo_model(data_dir / "models" / "demo"))
        return load_engine(ModelSpec(source, Quant(args.quant), demo=demo), progress, max_new_tokens=max_new_tokens)

    host = ModelHost(load).start()
    dialogue = DialogueManager(repository, host, MediaLoader(), TurnQueue())
    app = build_app(dialogue, host, demo=demo)
    # Stored files are immutable (content-addressed): served in place, never copied or re-hashed by Gradio.
    gr.set_static_paths([blobs.root])
    hosts = security.allowed_hosts(args.host, args.allowed_hosts.split(","))
    app.queue(default_concurrency_limit=16).launch(
        server_name=args.host,
        server_port=args.port,
        auth=auth,
        allowed_paths=[str(blobs.root)],
        max_file_size=limits.MAX_FILE_BYTES,
        app_kwargs={"middleware": security.middleware(hosts)},
        show_error=False,
        footer_links=[],
    )


if __name__ == "__main__":
    sys.exit(main())
