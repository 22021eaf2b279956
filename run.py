"""Entry point: parse options, wire storage, model host, dialogue manager and UI, and serve the page."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from assistant.demo_model import DEFAULT_DEMO_FAMILY
from assistant.loader import DEFAULT_MODEL, ModelSpec, Quant
from domain import limits

if TYPE_CHECKING:
    from storage.api_keys import ApiKeyRepository
    from storage.instances import Instances
    from storage.orphans import OrphanSweeper
    from storage.repository import ConversationRepository
    from storage.transcripts import TranscriptRepository
    from storage.users import UserRepository

DEFAULT_HOST = "127.0.0.1"
ENCODER_CACHE = Path("cache") / "encoders"  # under the data dir: image and audio encoder outputs, per model
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
        nargs="?",
        const=DEFAULT_DEMO_FAMILY,
        default=None,
        metavar="FAMILY",
        help="use a tiny built-in model with random weights, of FAMILY (qwen2.5-omni, gemma4, qwen2.5-vl, qwen3-vl, "
        f"qwen2-audio; default {DEFAULT_DEMO_FAMILY}), and a tiny random Whisper (offline; answers are meaningless)",
    )
    parser.add_argument(
        "--whisper-model",
        default=None,
        help="openai-whisper model name or checkpoint file for audio transcripts (default turbo on CUDA, base on CPU; "
        "none turns transcripts off); named weights are downloaded into the data dir on first need",
    )
    parser.add_argument(
        "--max-audio-seconds",
        type=float,
        default=limits.MAX_AUDIO_SECONDS,
        help=f"longest audio clip accepted (default {limits.MAX_AUDIO_SECONDS:.0f}); the model hears it in windows, the transcript covers it all",
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
    parser.add_argument(
        "--allowed-origins",
        default=os.environ.get("ASSISTANT_ALLOWED_ORIGINS", ""),
        help="comma-separated web origins (scheme://host[:port]) whose pages may call the app from the browser, "
        "e.g. a web front end of yours; any other site's requests are refused (or set ASSISTANT_ALLOWED_ORIGINS)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="longest answer, in tokens")
    parser.add_argument(
        "--no-reuse",
        action="store_true",
        help="prefill every turn in full and run every image and audio through its encoder again (for comparison)",
    )
    parser.add_argument(
        "--kv-cache-gb",
        type=float,
        default=None,
        help="memory for conversations' KV caches between turns, least recently used evicted "
        "(default: a quarter of the free GPU memory up to 8, or 2 on a CPU)",
    )
    parser.add_argument(
        "--max-context",
        type=int,
        default=None,
        help="use at most this many tokens of the model's context (default: all of it); older parts of a longer "
        "conversation are left out, and the page says which",
    )
    parser.add_argument(
        "--auth",
        default=os.environ.get("ASSISTANT_AUTH"),
        help="USER:PASSWORD login, required when --host is not a loopback address (or set ASSISTANT_AUTH)",
    )
    parser.add_argument(
        "--engine",
        choices=["transformers", "openai"],
        default="transformers",
        help="transformers: load --model in this process (default); openai: send generation to the "
        "OpenAI-compatible server at --engine-url (vLLM, SGLang), which serves --model by that name",
    )
    parser.add_argument("--engine-url", default=None, help="with --engine openai: the server's base URL, e.g. http://gpu-box:8000/v1")
    parser.add_argument(
        "--engine-key", default=os.environ.get("ASSISTANT_ENGINE_KEY"), help="with --engine openai: its API key (or set ASSISTANT_ENGINE_KEY)"
    )
    parser.add_argument(
        "--engine-audio-part",
        choices=["input_audio", "audio_url"],
        default="input_audio",
        help="with --engine openai: how audio is sent (vLLM takes input_audio, the default; SGLang takes audio_url)",
    )
    parser.add_argument(
        "--engine-accepts",
        default=None,
        help="with --engine openai: what the served model takes, e.g. text,image,audio (default: from the model's "
        "name when the app knows its family, else text)",
    )
    parser.add_argument(
        "--engine-concurrency",
        type=int,
        default=64,
        help="with --engine openai: answers sent to the server at once (it batches them; default 64)",
    )
    parser.add_argument(
        "--allow-remote-media",
        action="store_true",
        help="let API requests name images and audio by http(s) URL, which the app then fetches (never from "
        "loopback or private addresses); without it, media come as data: URLs",
    )
    parser.add_argument(
        "--api-queue-limit",
        type=int,
        default=32,
        help="when this many answers wait for the model already, API requests get 429 with Retry-After (default 32)",
    )
    return parser.parse_args(argv)


def parse_accepts(value: str | None):
    """--engine-accepts text,image,audio -> the media kinds besides text (None: not given)."""
    if value is None:
        return None
    from domain.types import MediaKind

    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = names - {"text", "image", "audio"}
    if unknown:
        raise SystemExit(f"error: --engine-accepts takes text, image and audio, not {', '.join(sorted(unknown))}")
    return frozenset(MediaKind(name) for name in names - {"text"})


def api_model_id(args: argparse.Namespace) -> str:
    """The model's name in the API: demo-FAMILY, a local folder's name, or the Hugging Face id."""
    if args.demo:
        return f"demo-{args.demo}"
    path = Path(args.model).expanduser()
    if args.engine == "openai":
        return args.model
    return path.name if path.is_dir() else args.model


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SystemExit("error: --auth must look like USER:PASSWORD")
    return user, password


class Storage(NamedTuple):
    conversations: ConversationRepository
    users: UserRepository
    transcripts: TranscriptRepository
    keys: ApiKeyRepository
    instances: Instances | None  # with a writer: this instance's heartbeat and the answers it writes
    orphans: OrphanSweeper  # removes stored files no message refers to (left by a kill mid-upload or mid-import)


def open_storage(data_dir: Path, db_url: str | None, writer: str | None = None) -> Storage:
    """The repositories on the database and files of `data_dir`; `writer` names this app instance."""
    from storage.api_keys import ApiKeyRepository
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.instances import Instances
    from storage.orphans import OrphanSweeper
    from storage.repository import ConversationRepository
    from storage.transcripts import TranscriptRepository
    from storage.users import UserRepository

    blobs = BlobStore(data_dir / "files")
    database = open_database(db_url or sqlite_url(data_dir / "conversations.sqlite3"))
    return Storage(
        ConversationRepository(database, blobs, writer=writer),
        UserRepository(database, blobs),
        TranscriptRepository(database),
        ApiKeyRepository(database),
        Instances(database, writer) if writer is not None else None,
        OrphanSweeper(database, blobs),
    )


def make_transcriber(source: str | None, demo: bool, data_dir: Path, store, media):
    """The Whisper worker the options ask for, or None when transcripts are off."""
    from assistant.transcribe import OFF, Transcriber, default_whisper_model, load_whisper

    if source == OFF:
        return None
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if source is None and demo:
        from assistant.demo_whisper import DEMO_WHISPER_NAME, DEMO_WHISPER_OPTIONS, ensure_demo_whisper

        path = data_dir / "models" / "whisper-demo.pt"
        return Transcriber(
            store,
            media,
            lambda progress: load_whisper(str(ensure_demo_whisper(path)), path.parent, device, progress),
            DEMO_WHISPER_NAME,
            options=DEMO_WHISPER_OPTIONS,
        ).start()
    name = source or default_whisper_model(cuda)
    root = data_dir / "models" / "whisper"
    return Transcriber(store, media, lambda progress: load_whisper(name, root, device, progress), f"Whisper {name}", fp16=cuda).start()


COMMANDS = ("export", "import", "adduser", "deluser", "passwd", "apikey")


def command(argv: list[str]) -> int:
    """The command-line tools: export, import, adduser, deluser, passwd, apikey (see --help)."""
    parser = argparse.ArgumentParser(prog="run.py", description="Manage conversations and accounts.")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write conversations (all, or those named) to a zip")
    export.add_argument("--out", type=Path, required=True, help="the zip file to write")
    export.add_argument("--conversation", action="append", help="a conversation id (repeat for several; default all)")
    imported = commands.add_parser("import", help="read a zip from this app, or ChatGPT's / Open WebUI's export")
    imported.add_argument("file", type=Path)
    imported.add_argument(
        "--max-audio-seconds", type=float, default=limits.MAX_AUDIO_SECONDS, help="as for the app: longer clips are left out"
    )
    for sub in (export, imported):
        sub.add_argument("--user", help="whose conversations (required once accounts exist)")
    account_commands = []
    for name, help_text in (("adduser", "add a user"), ("deluser", "delete a user and their conversations"), ("passwd", "set a user's password")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("name")
        account_commands.append(sub)
        if name != "deluser":
            sub.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    apikey = commands.add_parser("apikey", help="create, list or revoke a user's keys for the OpenAI-compatible API")
    apikey.add_argument("action", choices=["create", "list", "revoke"])
    apikey.add_argument("--user", required=True, help="whose keys")
    apikey.add_argument("--name", default="key", help="create: a name to tell the key apart")
    apikey.add_argument("--id", type=int, help="revoke: the key's id (from list)")
    for sub in (export, imported, apikey, *account_commands):
        sub.add_argument("--data-dir", type=Path, default=None, help="as for the app")
        sub.add_argument("--db", default=None, help="as for the app")
    args = parser.parse_args(argv)

    from domain.errors import AssistantError
    from storage.exchange import export_zip

    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stores = open_storage(data_dir, args.db)
    conversations_repo, users, keys = stores.conversations, stores.users, stores.keys
    try:
        if args.command == "apikey":
            return api_key_command(args, users, keys)
        if args.command in ("adduser", "passwd"):
            password = read_password(args.password_stdin)
            (users.add if args.command == "adduser" else users.set_password)(args.name, password)
            print(f"{'Added' if args.command == 'adduser' else 'Changed the password of'} {args.name}.")
        elif args.command == "deluser":
            from assistant.reuse import forget_encoded

            forget_encoded(data_dir / ENCODER_CACHE, users.delete(args.name))
            print(f"Deleted {args.name} and their conversations.")
        else:
            owner = None
            if args.user or users.any():
                owner = users.id_of(args.user)
                if owner is None:
                    raise SystemExit(f"error: name an existing user with --user (users: {', '.join(users.names())})")
            repository = conversations_repo.for_owner(owner)
            if args.command == "export":
                conversations = repository.export_conversations(args.conversation)
                export_zip(conversations, args.out)
                print(f"Exported {len(conversations)} conversation(s) to {args.out}.")
            else:
                if not args.file.is_file():
                    raise SystemExit(f"error: {args.file} does not exist")
                from assistant.imports import import_archive

                summary = import_archive(args.file, repository.import_conversations, args.max_audio_seconds)
                print(summary.sentence())
    except AssistantError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def api_key_command(args, users, keys) -> int:
    owner = users.id_of(args.user)
    if owner is None:
        raise SystemExit(f"error: there is no user called {args.user} (add one with: python run.py adduser NAME)")
    if args.action == "create":
        record, key = keys.create(owner, args.name)
        print(f"Created API key {record.id} ({record.name}) for {args.user}. It is shown only now:\n{key}")
    elif args.action == "list":
        for record in keys.list(owner):
            used = record.last_used_at.strftime("%Y-%m-%d %H:%M") if record.last_used_at else "never"
            print(f"{record.id}\t{record.name}\t{record.prefix}…\tcreated {record.created_at:%Y-%m-%d %H:%M}\tused {used}")
    else:
        if args.id is None:
            raise SystemExit("error: revoke needs --id (see: python run.py apikey list --user NAME)")
        keys.revoke(owner, args.id)
        print(f"Revoked API key {args.id} of {args.user}.")
    return 0


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise SystemExit("error: the two passwords differ")
    return password


def refuse_exposed(host: str):
    raise SystemExit(
        f"error: --host {host} makes the app reachable from other machines; add a user first "
        "(python run.py adduser NAME) or give a login with --auth USER:PASSWORD (or ASSISTANT_AUTH)."
    )


def main(argv: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in COMMANDS:
        return command(argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    auth = parse_auth(args.auth)
    from domain.addresses import is_loopback  # light: the standard library only
    from ui.security import parse_origins

    try:
        origins = parse_origins(args.allowed_origins.split(","))
    except ValueError as error:
        raise SystemExit(f"error: --allowed-origins: {error}") from None
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    exposed = not is_loopback(args.host) and auth is None
    if exposed and args.db is None and not (data_dir / "conversations.sqlite3").exists():
        refuse_exposed(args.host)  # no database, so no users: say so before creating anything
    data_dir.mkdir(parents=True, exist_ok=True)
    from storage.instances import instance_name
    from ui.uploads import instance_folder

    me = instance_name(args.port)  # this instance, as its answers and its uploads folder name it
    uploads = data_dir / "uploads" / instance_folder(me)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(uploads))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # a local assistant sends nothing anywhere

    from api import remote_media
    from api.routes import ChatApi
    from assistant.demo_model import ensure_demo_model, is_demo_checkpoint
    from assistant.dialogue import DialogueManager
    from assistant.families import family_named, family_of_checkpoint
    from assistant.engine import DEFAULT_MAX_NEW_TOKENS
    from assistant.loader import load_engine
    from assistant.media import MediaLoader
    from assistant.model_host import ModelHost
    from assistant.remote_engine import OpenAIEngine, family_for_model
    from assistant.reuse import Reuse
    from assistant.turn_queue import TurnQueue
    from domain.errors import ModelLoadError
    from ui import security
    from ui.app import build_app
    from ui.exports import ExportStore, export_route
    from ui.files import attachment_route
    from starlette.middleware import Middleware

    from ui.app import TITLE
    from ui.server import build_server_app, serve
    from ui.sessions import LOGIN_NOTE, Sessions
    from ui.signin import SignInRedirect, signin_route
    from ui.uploads import clear_stale_uploads

    stores = open_storage(data_dir, args.db, writer=me)
    repository, users, transcripts, keys = stores.conversations, stores.users, stores.transcripts, stores.keys
    if auth is not None:  # --auth USER:PASSWORD creates that user, or sets their password
        (users.set_password if users.id_of(auth[0]) is not None else users.add)(*auth)
    if exposed and not users.any():
        refuse_exposed(args.host)
    # Answers an earlier run of this instance, or an instance that has stopped, left streaming: kept, marked.
    interrupted = stores.instances.start()
    if interrupted:
        logging.info("kept %d answer(s) that an earlier run left unfinished", interrupted)
    orphans, orphan_bytes = stores.orphans.start()  # now, then hourly
    if orphans:
        logging.info("removed %d stored file(s) (%.1f MB) that no message refers to", orphans, orphan_bytes / 1e6)
    stale = clear_stale_uploads(data_dir / "uploads", uploads.name, stores.instances.alive())
    if stale:
        logging.info("deleted %d upload(s) an earlier run left unsent", stale)

    remote = args.engine == "openai"
    if remote and (not args.engine_url or args.demo):
        raise SystemExit("error: --engine openai needs --engine-url URL and --model NAME (the served model), not --demo")
    demo = not remote and (args.demo is not None or is_demo_checkpoint(Path(args.model).expanduser()))
    max_new_tokens = args.max_new_tokens or (64 if demo else DEFAULT_MAX_NEW_TOKENS)
    try:  # known before loading when it can be: the page then offers only what the model takes
        if remote:
            family = family_for_model(args.model, parse_accepts(args.engine_accepts))
        else:
            family = family_named(args.demo) if args.demo else family_of_checkpoint(Path(args.model).expanduser())
    except ModelLoadError as error:
        if args.demo or Path(args.model).expanduser().is_dir():
            raise SystemExit(f"error: {error}") from None
        family = None  # a Hugging Face id: its config arrives with the download

    def load(progress):
        if remote:
            progress(f"Connecting to {args.engine_url}…", None)
            return OpenAIEngine(
                args.engine_url,
                args.model,
                family,
                api_key=args.engine_key,
                audio_part=args.engine_audio_part,
                max_new_tokens=max_new_tokens,
                max_context=args.max_context,
            )
        source = args.model
        if args.demo:
            progress("Building the demo model (first start only)…", None)
            source = str(ensure_demo_model(data_dir / "models" / f"demo-{args.demo}", args.demo))
        reuse = None if args.no_reuse else Reuse(args.kv_cache_gb, data_dir / ENCODER_CACHE)
        return load_engine(
            ModelSpec(source, Quant(args.quant), demo=demo),
            progress,
            max_new_tokens=max_new_tokens,
            max_context=args.max_context,
            reuse=reuse,
        )

    host = ModelHost(load, family).start()
    media = MediaLoader()
    transcriber = make_transcriber(args.whisper_model, demo, data_dir, transcripts, media)
    queue = TurnQueue(slots=args.engine_concurrency if remote else 1)
    dialogue = DialogueManager(
        repository, host, media, queue, transcriber=transcriber, max_audio_seconds=args.max_audio_seconds
    )
    sessions = Sessions(users)
    # Exports wait for their one download outside Gradio's folders (which it serves to anyone who has the path).
    exports = ExportStore(data_dir / "exports" / instance_folder(me)).start()
    app = build_app(dialogue, host, demo=demo, owner_of=sessions.owner_of, api_keys=keys, exports=exports)
    api = ChatApi(
        dialogue,
        host,
        model_id=api_model_id(args),
        accounts=users.any,
        user_of_key=keys.user_of,
        upload_dir=uploads / "api",
        queue_limit=args.api_queue_limit,
        fetch=remote_media.fetch if args.allow_remote_media else None,
    )
    hosts = security.allowed_hosts(args.host, args.allowed_hosts.split(","))
    # With accounts, the page asks for a login (users added later count after a restart). Attachments are
    # served only through a route that checks their owner, never from a folder open to every session.
    server, gradio_app = build_server_app(
        app.queue(default_concurrency_limit=16),
        routes=[
            attachment_route(dialogue, sessions.owner),
            export_route(exports, sessions.owner),
            signin_route(TITLE, LOGIN_NOTE),
            *api.routes(),
        ],
        middleware=security.middleware(hosts, origins, [*sessions.middleware(), Middleware(SignInRedirect, sessions=sessions)]),
        auth=sessions.authenticate if users.any() else None,
        max_file_size=limits.MAX_FILE_BYTES,
    )
    sessions.bind(gradio_app)
    serve(server, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
