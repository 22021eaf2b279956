"""Follow-ups with and without reuse: a scripted 10-turn conversation through the app's dialogue manager.

Turn 1 carries an image, turn 3 an audio clip, turn 6 another image, turn 8 a video with a sound track (heard in
the same item); the rest is text. The same script runs twice on one randomly initialised Qwen2.5-Omni Thinker:
with reuse (KV cache and encoder outputs kept) and with --no-reuse. Per turn it prints prompt tokens, prefilled
tokens, encoder calls (forward passes of the vision and audio towers: a video with sound takes both) and time to
first token both ways, and decode speed in the app and from raw `model.generate` on the same input. The summary's
`encoder_calls_per_item` counts items encoded with reuse (each video once, though two towers run for it). Sizes: `demo`;
`small` (about 100M parameters, for a CPU); `3b` and `7b`, the published shapes (for a GPU; weights are
written to a temporary folder and loaded through the app's loader, so nf4 is the real quantized path).
Run: .venv/bin/python bench/multiturn.py --size small [--quant none|4bit] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from assistant.demo_model import ensure_demo_model  # noqa: E402
from assistant.dialogue import DialogueManager  # noqa: E402
from assistant.engine import TransformersEngine  # noqa: E402
from assistant.loader import ModelSpec, Quant, load_engine  # noqa: E402
from assistant.media import MediaLoader  # noqa: E402
from assistant.model_host import ModelHost  # noqa: E402
from assistant.prompt import build_model_input  # noqa: E402
from assistant.reuse import Reuse  # noqa: E402
from assistant.turn_queue import TurnQueue  # noqa: E402

TURNS = 10
QWEN_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16}
SIZES = {
    "small": {"text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                              "num_attention_heads": 12, "num_key_value_heads": 2, "head_dim": 64},
              "audio_config": {"output_dim": 768}, "vision_config": {"out_hidden_size": 768}},
    "3b": {"text_config": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                           "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 151936},
           "audio_config": {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
                            "encoder_ffn_dim": 5120, "output_dim": 2048},
           "vision_config": {**QWEN_VISION, "out_hidden_size": 2048}},
    "7b": {"text_config": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                           "num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 152064},
           "audio_config": {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
                            "encoder_ffn_dim": 5120, "output_dim": 3584},
           "vision_config": {**QWEN_VISION, "out_hidden_size": 3584}},
}


def checkpoint(size: str, folder: Path) -> Path:
    """The demo checkpoint, or one of its processor with a randomly initialised model of the given size."""
    demo = ensure_demo_model(folder / "demo")
    if size == "demo":
        return demo
    from transformers import AutoProcessor

    target = folder / size
    if (target / "config.json").is_file():
        return target
    model = random_model(thinker_config(size, demo))
    partial = target.with_name(f"{size}.partial")  # a run cut short leaves no half-written checkpoint behind
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    AutoProcessor.from_pretrained(demo).save_pretrained(partial)
    partial.rename(target)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # so that the weights figure below is the loaded model's alone
    return target


def thinker_config(size: str, demo: Path):
    """The demo's Thinker config resized to `size` (SIZES), its rotary sections scaled to the head."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(demo).thinker_config
    for part, values in SIZES[size].items():
        for name, value in values.items():
            setattr(getattr(config, part), name, value)
    text = config.text_config
    text.layer_types = ["full_attention"] * text.num_hidden_layers
    head = text.head_dim
    text.rope_parameters = {**text.rope_parameters, "mrope_section": [head // 8, head * 3 // 16, head * 3 // 16]}
    return config


def load_checkpoint(size: str, quant: str, work: Path) -> TransformersEngine:
    """The checkpoint of `size` (built under `work` on first use) through the app's loader, decode not compiled;
    prints how long each step took."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    path = checkpoint(size, work)
    print(f"checkpoint ready in {time.perf_counter() - started:.0f}s", flush=True)
    started = time.perf_counter()
    base = load_engine(ModelSpec(str(path), Quant(quant), demo=True, compile=False), lambda *_: None)
    print(f"loaded ({base.info.quant}, {base.info.device}) in {time.perf_counter() - started:.0f}s", flush=True)
    return base


def random_model(config, model_class: str = "Qwen2_5OmniThinkerForConditionalGeneration"):
    """A `model_class` (a Thinker unless said) of `config` with random weights, built where it runs (bf16 on a GPU) without transformers' per-module
    initialisation: each weight is filled once with N(0, 0.02) (norms with ones), which costs the same FLOPs and
    bytes as trained weights; at the 7B shape this is what makes a GPU run's checkpoint cheap to build."""
    import transformers
    from transformers.initialization import no_init_weights

    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if cuda else torch.float32)
    try:
        with torch.device("cuda" if cuda else "cpu"), no_init_weights():
            model = getattr(transformers, model_class)(config)
    finally:
        torch.set_default_dtype(before)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.02)
            elif name.endswith("weight") and ("norm" in name or name.split(".")[-2].startswith("ln")):
                parameter.fill_(1.0)
            else:
                parameter.zero_()  # biases
    return model


class EncoderCalls:
    """Counts forward calls of the vision and audio towers."""

    def __init__(self, model):
        self.calls = 0
        for tower in (model.model.visual, model.model.audio_tower):
            tower.register_forward_hook(lambda *_: self._count())

    def _count(self):
        self.calls += 1


def media(folder: Path) -> dict[int, list[tuple[Path, str]]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    first, second = folder / "first.png", folder / "second.png"
    Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8)).save(first)
    Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8)).save(second)
    clip = folder / "clip.wav"
    import wave

    samples = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000 * 8) / 16000) * 32767).astype(np.int16)
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000), out.writeframes(samples.tobytes())
    video = write_video(folder / "video.mp4", rng)
    return {1: [(first, "first.png")], 3: [(clip, "clip.wav")], 6: [(second, "second.png")], 8: [(video, "video.mp4")]}


def write_video(path: Path, rng, seconds: int = 4, fps: int = 10, size: int = 224) -> Path:
    """An mp4 (H.264, AAC) of random frames with a 330 Hz tone as its sound track."""
    import av

    rate = 48000
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for _ in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        tone = (0.3 * np.sin(2 * np.pi * 330 * np.arange(rate * seconds) / rate)).astype(np.float32)
        step = audio.codec_context.frame_size or 1024
        for start in range(0, len(tone), step):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + step], format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    return path


def run(engine: TransformersEngine, reuse: Reuse | None, uploads, folder: Path, tokens: int, repeats: int) -> list[dict]:
    from storage.blobs import BlobStore
    from storage.database import open_database, sqlite_url
    from storage.repository import ConversationRepository

    folder.mkdir(parents=True, exist_ok=True)
    repository = ConversationRepository(open_database(sqlite_url(folder / "db.sqlite3")), BlobStore(folder / "files"))
    counter = EncoderCalls(engine.model)
    host = ModelHost(lambda progress: engine).start()
    host.wait()
    manager = DialogueManager(repository, host, MediaLoader(), TurnQueue())
    conversation, rows = None, []
    for turn in range(1, TURNS + 1):
        before, encoded = counter.calls, reuse.encoders.calls if reuse is not None else 0
        events = list(manager.send(conversation, f"Turn {turn}: tell me more.", uploads.get(turn, []), threading.Event()))
        conversation = events[0].conversation.id
        answer = events[-1].message
        details = answer.details
        history = repository.get_path(answer.id)[:-1]
        rows.append({
            "turn": turn,
            "prompt_tokens": details.prompt_tokens,
            "prefilled": reuse.prefilled if reuse is not None else details.prompt_tokens,
            "encoder_calls": counter.calls - before,
            "items_encoded": reuse.encoders.calls - encoded if reuse is not None else None,
            "ttft_s": details.first_token_s,
            "app_tokens_per_s": details.tokens_per_s,
            "raw_tokens_per_s": raw_decode_rate(engine, history, tokens, repeats),
            "answer": answer.text,
        })
        row = rows[-1]
        print(f"  {'reuse' if reuse is not None else 'no reuse'} turn {turn}: {row['prompt_tokens']} tokens, "
              f"first token {row['ttft_s']:.3f}s, app {row['app_tokens_per_s'] or 0:.1f} t/s, raw {row['raw_tokens_per_s']:.1f} t/s",
              flush=True)
    return rows


def warm_up(engine: TransformersEngine, uploads) -> None:
    """One answer with an image, a clip and a video first, so neither run pays the first call's one-off costs."""
    from assistant.media import decode_audio, decode_video, load_image
    from assistant.prompt import ModelInput

    (image, _), (clip, _), (video, _) = uploads[1][0], uploads[3][0], uploads[8][0]
    family = engine.family
    content = [{"type": "image"}, {"type": "audio"}, {"type": "video"}, {"type": "text", "text": "warm up"}]
    model_input = ModelInput(
        [{"role": "user", "content": content}], [load_image(image)], [decode_audio(clip)],
        [decode_video(video, family.video_fps, family.video_max_frames, total_pixels=family.video_total_pixels)],
        sound_order=[None, 0],
    )
    for _ in engine.stream(model_input, threading.Event()):
        pass


class TokenClock:
    """A streamer that only notes when generate() hands over each new token."""

    def __init__(self):
        self.times: list[float] = []
        self._prompt = True

    def put(self, value) -> None:
        if self._prompt:  # the prompt comes first
            self._prompt = False
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def raw_decode_rate(engine: TransformersEngine, history, tokens: int, repeats: int) -> float:
    """Decode tokens per second of plain model.generate on the same prompt, measured as the app measures its own:
    (N - 1) tokens over the time from the first to the last; the median of `repeats` runs."""
    plain = TransformersEngine(engine.model, engine.processor, engine.info, engine.family)  # the processor's whole output
    inputs = plain.prepare(build_model_input(history, MediaLoader(), None, engine.family))
    args = dict(inputs)
    for key, value in args.items():
        if value.is_floating_point():
            args[key] = value.to(engine.float_dtype)

    def rate() -> float:
        clock = TokenClock()
        with torch.inference_mode():
            engine.model.generate(**args, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, streamer=clock)
        return (len(clock.times) - 1) / max(clock.times[-1] - clock.times[0], 1e-9)

    # On a busy CPU single runs vary by ±10%: take the median of three there.
    return statistics.median(rate() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["demo", "small", "3b", "7b"], default="small")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none")
    parser.add_argument("--tokens", type=int, default=32, help="answer length (forced)")
    parser.add_argument("--repeats", type=int, default=3, help="raw decode timings per turn (median)")
    parser.add_argument("--compile", action="store_true", help="answer with the compiled decode (assistant/compiled.py)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "assistant-multiturn")
    args = parser.parse_args()
    base = load_checkpoint(args.size, args.quant, args.work)
    weights_gib = torch.cuda.memory_allocated() / 2**30 if torch.cuda.is_available() else None
    print(f"weights {weights_gib or 0:.2f} GiB on the GPU", flush=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    greedy = {"do_sample": False, "min_new_tokens": args.tokens}
    uploads = media(args.work)
    results = {}
    warm_up(base, uploads)
    for name in ("reuse", "no_reuse"):
        folder = args.work / "runs" / f"{name}-{time.time_ns()}"
        reuse = Reuse(4.0, folder / "encoders") if name == "reuse" else None  # a fresh encoder cache each run
        engine = TransformersEngine(base.model, base.processor, base.info, base.family, max_new_tokens=args.tokens,
                                    generation_kwargs=greedy, reuse=reuse, compile_decode=args.compile)
        if args.compile:
            started = time.perf_counter()
            print(f"  compiled decode {'ready' if engine.warm_up() else 'failed'} in {time.perf_counter() - started:.0f}s", flush=True)
        results[name] = run(engine, reuse, uploads, folder, args.tokens, args.repeats)
    with_reuse, without = results["reuse"], results["no_reuse"]
    params = sum(p.numel() for p in base.model.parameters())
    print(f"size {args.size} ({params / 1e6:.0f}M parameters), {base.info.quant}, {base.info.device}, {args.tokens}-token answers")
    print(f"{'turn':>4} {'prompt':>7} {'prefill':>8} {'prefill':>8} {'enc':>4} {'enc':>4} {'ttft s':>8} {'ttft s':>8} "
          f"{'ratio':>6} {'app t/s':>8} {'raw t/s':>8}")
    print(f"{'':>4} {'tokens':>7} {'reuse':>8} {'full':>8} {'re':>4} {'full':>4} {'reuse':>8} {'full':>8} {'':>6} {'reuse':>8} {'':>8}")
    for r, f in zip(with_reuse, without):
        print(f"{r['turn']:>4} {r['prompt_tokens']:>7} {r['prefilled']:>8} {f['prefilled']:>8} {r['encoder_calls']:>4} "
              f"{f['encoder_calls']:>4} {r['ttft_s']:>8.3f} {f['ttft_s']:>8.3f} {r['ttft_s'] / f['ttft_s']:>6.2f} "
              f"{r['app_tokens_per_s'] or 0:>8.1f} {r['raw_tokens_per_s']:>8.1f}")
    summary = {
        "size": args.size,
        "quant": base.info.quant,
        "compiled": args.compile,
        "device": base.info.device,
        "parameters": params,
        "ttft_ratio_turn10": with_reuse[-1]["ttft_s"] / without[-1]["ttft_s"],
        "encoder_calls_per_item": sum(r["items_encoded"] for r in with_reuse) / sum(len(u) for u in uploads.values()),
        "tower_calls": {"reuse": sum(r["encoder_calls"] for r in with_reuse), "no_reuse": sum(f["encoder_calls"] for f in without)},
        "identical": [r["answer"] for r in with_reuse] == [f["answer"] for f in without],
        "decode_ratio": statistics.median(r["app_tokens_per_s"] / r["raw_tokens_per_s"] for r in with_reuse),
        "weights_gpu_gib": weights_gib,
        "ttft_s_turn10": {"reuse": with_reuse[-1]["ttft_s"], "no_reuse": without[-1]["ttft_s"]},
        "app_tokens_per_s": statistics.median(r["app_tokens_per_s"] for r in with_reuse),
        "raw_tokens_per_s": statistics.median(r["raw_tokens_per_s"] for r in with_reuse),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "reuse": with_reuse, "no_reuse": without}, indent=1))


if __name__ == "__main__":
    main()
