"""The app's options (`python run.py --help`), checked and turned into values; what they mean is in README.md.
Knows nothing of how the app is wired."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from assistant.demo_model import DEFAULT_DEMO_FAMILY
from assistant.loader import DEFAULT_MODEL, Quant
from domain import limits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The app's options; --help lists them."""
    from assistant.families import families
    from domain.errors import ModelLoadError

    try:
        demo_names = ", ".join(families())
    except ModelLoadError as error:  # a bad ASSISTANT_EXTRA_FAMILIES: its sentence, not a traceback
        raise SystemExit(f"error: {error}") from None
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
        # Not argparse `choices`: an unknown family gets the registry's sentence naming each family and its title.
        help=f"use a tiny built-in model with random weights, of FAMILY ({demo_names}; default "
        f"{DEFAULT_DEMO_FAMILY}), and a tiny random Whisper (offline; answers are meaningless)",
    )
    parser.add_argument(
        "--whisper-model",
        default=None,
        help="openai-whisper model name or checkpoint file for audio transcripts (default turbo on CUDA, base on CPU; "
        "none turns transcripts off); named weights are downloaded into the data dir on first need",
    )
    parser.add_argument(
        "--speech",
        choices=("auto", "on", "off"),
        default="auto",
        help="spoken answers (🔊 under each answer, /v1/audio/speech, audio in chat completions): auto and on speak with "
        "Piper's voices, fetched into the data dir on first use (the demo builds random ones); off turns speech off",
    )
    parser.add_argument(
        "--max-audio-seconds",
        type=float,
        default=limits.MAX_AUDIO_SECONDS,
        help=f"longest audio clip accepted (default {limits.MAX_AUDIO_SECONDS:.0f}); the model hears it in windows, the transcript covers it all",
    )
    parser.add_argument(
        "--max-video-seconds",
        type=float,
        default=limits.MAX_VIDEO_SECONDS,
        help=f"longest video accepted (default {limits.MAX_VIDEO_SECONDS:.0f}); the model sees frames sampled from all of it",
    )
    parser.add_argument(
        "--max-video-mb",
        type=float,
        default=limits.MAX_VIDEO_BYTES / 2**20,
        help=f"largest video file accepted, in MB (default {limits.MAX_VIDEO_BYTES / 2**20:.0f}; other files: "
        f"{limits.MAX_FILE_BYTES / 2**20:.0f})",
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
        type=_gigabytes,
        default=None,
        help="memory for conversations' KV caches between turns, least recently used evicted, and for the compiled "
        "decode's static caches (default: a quarter of the free GPU memory up to 8, or 2 on a CPU)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode through torch.compile over a static KV cache, compiled while the model loads (default: on a GPU); "
        "its cache takes memory from --kv-cache-gb; answers are generated eagerly if compilation fails",
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
        default=limits.ENGINE_CONCURRENCY,
        help=f"with --engine openai: answers sent to the server at once (it batches them; default {limits.ENGINE_CONCURRENCY})",
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
        default=limits.API_QUEUE_LIMIT,
        help=f"when this many answers wait for the model already, API requests get 429 with Retry-After (default {limits.API_QUEUE_LIMIT})",
    )
    args = parser.parse_args(argv)
    if args.engine == "openai" and (not args.engine_url or args.demo):
        raise SystemExit("error: --engine openai needs --engine-url URL and --model NAME (the served model), not --demo")
    return args


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
    """--auth USER:PASSWORD -> (user, password); None when not given."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SystemExit("error: --auth must look like USER:PASSWORD")
    return user, password


def parse_allowed_origins(value: str) -> list[str]:
    """--allowed-origins, comma-separated, normalised (ui.security.parse_origins)."""
    from ui.security import parse_origins  # light: the standard library only

    try:
        return parse_origins(value.split(","))
    except ValueError as error:
        raise SystemExit(f"error: --allowed-origins: {error}") from None


def refuse_exposed(host: str):
    """Stop before serving: listening beyond loopback with no account and no --auth would open the app to anyone."""
    raise SystemExit(
        f"error: --host {host} makes the app reachable from other machines; add a user first "
        "(python run.py adduser NAME) or give a login with --auth USER:PASSWORD (or ASSISTANT_AUTH)."
    )


def _gigabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of gigabytes: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more gigabytes, not {text}")
    return value
