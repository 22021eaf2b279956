"""Entry point: parse the options, then wire storage, model host, dialogue manager, page and API, and serve them.

Admin commands go to cli.admin, the options live in cli.options, model loading in assistant.loader.
"""

from __future__ import annotations

import logging
import os
import sys

from cli.admin import COMMANDS, command
from cli.data import DATABASE_FILE, open_storage, resolve_data_dir, tidy_up
from cli.options import api_model_id, parse_accepts, parse_allowed_origins, parse_args, parse_auth, refuse_exposed
from domain import limits
from domain.addresses import is_loopback


def main(argv: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in COMMANDS:
        return command(argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    auth = parse_auth(args.auth)
    origins = parse_allowed_origins(args.allowed_origins)
    data_dir = resolve_data_dir(args.data_dir)
    exposed = not is_loopback(args.host) and auth is None
    if exposed and args.db is None and not (data_dir / DATABASE_FILE).exists():
        refuse_exposed(args.host)  # no database, so no users: say so before creating anything
    data_dir.mkdir(parents=True, exist_ok=True)
    from storage.instances import instance_name
    from ui.uploads import instance_folder

    me = instance_name(args.port)  # this instance, as its answers and its uploads folder name it
    uploads = data_dir / "uploads" / instance_folder(me)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(uploads))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # a local assistant sends nothing anywhere

    from api import remote_media
    from api.audio import AudioApi
    from api.routes import ChatApi, guarded
    from assistant.dialogue import DialogueManager
    from assistant.loader import Quant, local_model, make_speech, make_transcriber, remote_model
    from assistant.media import MediaLoader
    from assistant.model_host import ModelHost
    from assistant.turn_queue import TurnQueue
    from domain.errors import ModelLoadError
    from starlette.middleware import Middleware
    from ui import security
    from ui.app import TITLE, build_app
    from ui.exports import ExportStore, export_route
    from ui.files import attachment_route
    from ui.server import build_server_app, serve
    from ui.sessions import LOGIN_NOTE, Sessions
    from ui.signin import SignInRedirect, signin_route

    # Storage: the accounts, then what earlier runs left behind.
    stores = open_storage(data_dir, args.db, writer=me)
    users, keys = stores.users, stores.keys
    if auth is not None:  # --auth USER:PASSWORD creates that user, or sets their password
        (users.set_password if users.id_of(auth[0]) is not None else users.add)(*auth)
    if exposed and not users.any():
        refuse_exposed(args.host)
    tidy_up(stores, uploads)

    # The model: known before loading when it can be (the page then offers only what it takes), loaded by the host.
    remote = args.engine == "openai"
    limits_asked = {"max_new_tokens": args.max_new_tokens, "max_context": args.max_context}
    try:
        if remote:
            accepts = parse_accepts(args.engine_accepts)
            model = remote_model(
                args.engine_url, args.model, accepts=accepts, api_key=args.engine_key, audio_part=args.engine_audio_part, **limits_asked
            )
        else:
            model = local_model(
                args.model, Quant(args.quant), data_dir, demo_family=args.demo, reuse=not args.no_reuse,
                kv_cache_gb=args.kv_cache_gb, compile_decode=args.compile, speech=args.speech, **limits_asked,
            )  # fmt: skip
    except ModelLoadError as error:
        raise SystemExit(f"error: {error}") from None
    host = ModelHost(model.load, model.family).start()

    # The dialogue manager: every turn, from the page or the API, goes through it.
    media = MediaLoader()
    transcriber = make_transcriber(args.whisper_model, model.demo, data_dir, stores.transcripts, media)
    speech = make_speech(args.speech, model.demo, data_dir, host)
    queue = TurnQueue(slots=args.engine_concurrency if remote else 1)
    dialogue = DialogueManager(
        stores.conversations, host, media, queue, transcriber=transcriber, speech=speech,
        max_audio_seconds=args.max_audio_seconds, max_video_seconds=args.max_video_seconds,
        max_video_bytes=int(args.max_video_mb * 2**20),
    )

    # The page and the API, in one server behind one HTTP policy.
    sessions = Sessions(users)
    # Exports wait for their one download outside Gradio's folders (which it serves to anyone who has the path).
    exports = ExportStore(data_dir / "exports" / instance_folder(me)).start()
    app = build_app(dialogue, host, demo=model.demo, owner_of=sessions.owner_of, api_keys=keys, exports=exports)
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
    audio_api = AudioApi(
        api.owner,
        guarded,
        model_id=api.model_id,
        speech=speech,
        transcriber=transcriber,
        upload_dir=uploads / "api",
        decode=media.audio,
        max_audio_seconds=args.max_audio_seconds,
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
            *audio_api.routes(),
        ],
        middleware=security.middleware(hosts, origins, [*sessions.middleware(), Middleware(SignInRedirect, sessions=sessions)]),
        auth=sessions.authenticate if users.any() else None,
        max_file_size=limits.MAX_FILE_BYTES,
    )
    sessions.bind(gradio_app)
    serve(server, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
