"""run.py as a user starts it: options, a model that cannot be fetched, refusing an open port without login."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from tests.helpers import ROOT


def test_help_lists_the_options():
    out = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for option in ("--model", "--quant", "--demo", "--data-dir", "--db", "--host", "--port"):
        assert option in out
    from assistant.families import families

    help_text = " ".join(out.split())  # argparse wraps the lines
    assert f"of FAMILY ({', '.join(families())}; default qwen2.5-omni)" in help_text


def test_each_admin_command_has_its_help(capsys):
    from cli.admin import COMMANDS
    from run import main

    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit:
            main([name, "--help"])
        assert exit.value.code == 0 and capsys.readouterr().out.startswith(f"usage: run.py {name}")


def test_unfetchable_model_is_one_clear_line_and_the_page_still_comes_up(start_app, tmp_path):
    app = start_app("--model", "no-such-org/no-such-model", "--data-dir", str(tmp_path / "data"))
    app.wait_for_page()
    app.wait_for_log("Could not load the model")
    output = app.output()
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "Could not load the model" in line]
    assert "--demo" in line and "--model PATH" in line and "no-such-org/no-such-model" in line
    with urllib.request.urlopen(app.url) as response:  # the page keeps serving (and shows the same line)
        assert response.status == 200


def test_listening_beyond_loopback_requires_a_login(tmp_path):
    result = subprocess.run(
        [sys.executable, "run.py", "--host", "0.0.0.0", "--demo", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "--auth" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "conversations.sqlite3").exists()


def test_export_and_import_from_the_command_line(tmp_path):
    from tests.helpers import repository_at, rich_history

    source = tmp_path / "source"
    rich_history(repository_at(source), tmp_path)
    out = tmp_path / "all.zip"

    def run(*args):
        return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)

    exported = run("export", "--out", str(out), "--data-dir", str(source), "--db", f"sqlite:///{source / 'db.sqlite3'}")
    assert exported.returncode == 0, exported.stderr
    assert "Exported 2 conversation(s)" in exported.stdout and out.is_file()
    imported = run("import", str(out), "--data-dir", str(tmp_path / "target"))
    assert imported.returncode == 0, imported.stderr
    assert "Imported 2 conversation(s), 6 message(s), 2 file(s)." in imported.stdout
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"nope")
    refused = run("import", str(bad), "--data-dir", str(tmp_path / "target"))
    assert refused.returncode == 1 and "not an export this app can read" in refused.stderr and "Traceback" not in refused.stderr


def test_accounts_from_the_command_line(tmp_path):
    def run(*args, password=None):
        return subprocess.run(
            [sys.executable, "run.py", *args, "--data-dir", str(tmp_path)],
            cwd=ROOT, input=password, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    added = run("adduser", "alice", "--password-stdin", password="alice's password\n")
    assert added.returncode == 0 and "Added alice." in added.stdout
    short = run("adduser", "bob", "--password-stdin", password="short\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr and "Traceback" not in short.stderr
    again = run("adduser", "alice", "--password-stdin", password="another password\n")
    assert again.returncode == 1 and "already a user called alice" in again.stderr
    changed = run("passwd", "alice", "--password-stdin", password="a new password\n")
    assert changed.returncode == 0
    from cli.data import open_storage

    users = open_storage(tmp_path, None).users
    assert users.verify("alice", "a new password") and not users.verify("alice", "alice's password")
    # With accounts, export and import need to know whose conversations.
    anonymous = run("export", "--out", str(tmp_path / "x.zip"))
    assert anonymous.returncode != 0 and "--user" in anonymous.stderr
    assert run("export", "--out", str(tmp_path / "x.zip"), "--user", "alice").returncode == 0
    # Alice's picture, and encoder outputs a running app derived from it.
    from domain.types import MediaFile, MediaKind
    from tests.media_factory import png

    conversations = open_storage(tmp_path, None).conversations
    picture = png(tmp_path / "p.png")
    message = conversations.for_owner(users.id_of("alice")).add_user_message(
        None, "mine", [MediaFile(picture, "p.png", MediaKind.IMAGE, "image/png")], new_title="mine"
    )
    derived = tmp_path / "cache" / "encoders" / "some-model" / message.attachments[0].sha256
    derived.mkdir(parents=True)
    (derived / "features.pt").write_bytes(b"features")
    deleted = run("deluser", "alice")
    assert deleted.returncode == 0 and users.names() == []
    assert not derived.exists() and not message.attachments[0].path.exists()


def test_reuse_and_context_options():
    from cli.options import parse_args

    args = parse_args(["--no-reuse", "--kv-cache-gb", "0.5", "--max-context", "4096", "--demo", "gemma4"])
    assert args.no_reuse and args.kv_cache_gb == 0.5 and args.max_context == 4096 and args.demo == "gemma4"
    defaults = parse_args([])
    assert not defaults.no_reuse and defaults.kv_cache_gb is None and defaults.max_context is None and defaults.demo is None
    assert parse_args(["--demo"]).demo == "qwen2.5-omni" and parse_args(["--whisper-model", "none"]).whisper_model == "none"


def test_compiled_decode_is_on_by_default_only_on_a_gpu(demo_model_dir, tmp_path):
    from assistant.loader import Quant, local_model
    from cli.options import parse_args

    assert parse_args([]).compile is None
    for bad in ("-1", "nan", "inf", "lots"):
        with pytest.raises(SystemExit):
            parse_args(["--kv-cache-gb", bad])
    assert parse_args(["--compile"]).compile is True and parse_args(["--no-compile"]).compile is False
    import torch

    for asked in (None, False):  # None: on CUDA only
        engine = local_model(str(demo_model_dir), Quant.NONE, tmp_path, compile_decode=asked).load(lambda *_: None)
        assert (engine.compiled is not None) == (asked is None and torch.cuda.is_available())
