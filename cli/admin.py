"""The admin commands (`python run.py export|import|adduser|deluser|passwd|apikey`, see README.md): manage
conversations and accounts on the data folder while the app runs or without it. Messages for the person at the
terminal: a refusal (a domain.errors.AssistantError, an unknown user or file) is one line on standard error and exit
status 1; a wrong command line is argparse's usage and status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from assistant.loader import ENCODER_CACHE
from cli.data import open_storage, resolve_data_dir
from domain import limits

COMMANDS = ("export", "import", "adduser", "deluser", "passwd", "apikey")


def command(argv: list[str]) -> int:
    """Run one admin command (`argv` starts with its name); 0 when it worked, 1 when the app refused it."""
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

    data_dir = resolve_data_dir(args.data_dir)
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
    """apikey create|list|revoke --user NAME."""
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
    """One line of standard input, or a password typed twice at the terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise SystemExit("error: the two passwords differ")
    return password
