"""Spoken answers: how fast each voice speaks, and how long a person waits for the first sound.

- rtf: seconds to synthesise ÷ seconds of audio, and the wait for the first sentence, for Piper (the demo's random
  voices, or published ones found in --voices) and the Qwen2.5-Omni Talker of --size (`demo`; `small`: a 100M
  Thinker with a Talker and token2wav of a few layers, for a CPU; `3b`/`7b`: random weights of the published shapes,
  Thinker, Talker and token2wav, for a GPU).
- api: through /v1/chat/completions in this process (the app's routes, dialogue manager and engine): from the request
  carrying a finished spoken question to the first `delta.audio` byte of the streamed answer, and to its first text.
- page (--page): the app started as a user starts it and Chromium with a fake microphone playing a spoken question
  then silence, in voice mode: from the last loud sample of the question (the page script's own clock) to the
  question sent, the first piece of sound received and the first sound played; and how long barge-in (speaking over
  an answer) and Stop take to silence it.
Figures print as they come and go to --json after each section.
Run: .venv/bin/python bench/voice.py [--size demo] [--page] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXT = (
    "Hello, and thank you for asking. The car in the picture is red, and it is parked by the river. "
    "It looks quite new. 这辆车是红色的。它停在河边。"
)
# The Talker beside the published Thinker shapes (config.json of Qwen/Qwen2.5-Omni-7B as recalled, not read here:
# check before trusting the 3b/7b figures); token2wav at transformers' defaults, which are the published DiT and BigVGAN.
TALKER = {"hidden_size": 896, "intermediate_size": 18944, "num_hidden_layers": 24, "num_attention_heads": 12,
          "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 8448}
# `small`, for a CPU: the 100M Thinker of bench/multiturn.py with a Talker and token2wav of a few layers.
SMALL_TALKER = {**TALKER, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 6, "num_attention_heads": 8,
                "num_key_value_heads": 2, "head_dim": 64}
SMALL_TOKEN2WAV = {"dit_config": {"hidden_size": 512, "num_hidden_layers": 6, "num_attention_heads": 8, "head_dim": 64},
                   "bigvgan_config": {"upsample_initial_channel": 512}}
RESULTS: dict = {}


def report(section: str, values: dict, path: Path | None) -> None:
    RESULTS[section] = values
    print(f"== {section}: " + json.dumps(values, ensure_ascii=False), flush=True)
    if path is not None:
        path.write_text(json.dumps(RESULTS, indent=1, ensure_ascii=False))


def rtf(engine, voice: str, repeats: int = 2) -> dict:
    """Wait for the first sentence, and seconds of work per second of speech, over TEXT (warmed up once)."""
    list(engine.speak("Ready.", voice))
    firsts, ratios = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        first, audio = None, 0.0
        for piece in engine.speak(TEXT, voice):
            first = first if first is not None else time.perf_counter() - started
            audio += piece.seconds
        ratios.append((time.perf_counter() - started) / audio)
        firsts.append(first)
    return {"first_sentence_s": round(min(firsts), 3), "rtf": round(min(ratios), 3), "audio_s": round(audio, 2)}


def omni_checkpoint(size: str, work: Path) -> Path:
    """The demo checkpoint, or a random whole Omni model of a published Thinker shape with its Talker and speakers."""
    from assistant.demo_model import ensure_demo_model

    demo = ensure_demo_model(work / "demo")
    if size == "demo":
        return demo
    target = work / f"omni-{size}"
    if (target / "spk_dict.pt").is_file():
        return target
    import torch
    from transformers import AutoConfig, AutoProcessor, Qwen2_5OmniConfig

    from bench.multiturn import random_model, thinker_config

    thinker = thinker_config(size, demo)
    text = thinker.text_config
    base = AutoConfig.from_pretrained(demo).talker_config.to_dict()
    published = size != "small"  # the published vocabulary's text ids; `small` keeps the demo's vocabulary and ids
    talker = {**base, **(TALKER if published else SMALL_TALKER), "embedding_size": text.hidden_size,
              "tts_codec_start_token_id": 8293, "tts_codec_end_token_id": 8294, "tts_codec_pad_token_id": 8292,
              "tts_codec_mask_token_id": 8296}
    if published:
        talker.update(tts_text_pad_token_id=151859, tts_text_start_token_id=151860, tts_text_end_token_id=151861)
    talker["layer_types"] = ["full_attention"] * talker["num_hidden_layers"]
    head = talker["head_dim"]
    talker["rope_parameters"] = {**talker["rope_parameters"], "mrope_section": [head // 8, head * 3 // 16, head * 3 // 16]}
    config = Qwen2_5OmniConfig(thinker_config=thinker.to_dict(), talker_config=talker,
                               token2wav_config=SMALL_TOKEN2WAV if size == "small" else None, enable_audio_output=True)
    model = random_model(config, "Qwen2_5OmniForConditionalGeneration")
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    AutoProcessor.from_pretrained(demo).save_pretrained(partial)
    starts = {"Chelsie": 151870, "Ethan": 151871} if published else {
        name: value["bos_token"] for name, value in torch.load(demo / "spk_dict.pt", weights_only=True).items()}
    speakers = {name: {"bos_token": start, "cond": torch.randn(1, 192), "ref_mel": torch.randn(1, 300, 80)}
                for name, start in starts.items()}
    torch.save(speakers, partial / "spk_dict.pt")
    partial.rename(target)
    return target


def load(size: str, quant: str, work: Path):
    from assistant.loader import ModelSpec, Quant, load_engine

    path = omni_checkpoint(size, work)
    started = time.perf_counter()
    engine = load_engine(ModelSpec(str(path), Quant(quant), demo=True, compile=False, speech="on"), lambda *_: None,
                         max_new_tokens=64)
    print(f"loaded {size} ({engine.info.quant}, {engine.info.device}; {engine.info.voice_note}) in "
          f"{time.perf_counter() - started:.0f}s", flush=True)
    return engine


def piper(voices: Path | None, work: Path):
    from assistant.demo_voice import DEMO_VOICES, ensure_demo_voice
    from assistant.piper_speech import PUBLISHED_VOICES, PiperSpeech

    if voices is not None and all((voices / f"{v.code}.onnx").is_file() for v in PUBLISHED_VOICES.values()):
        return "published", PiperSpeech(PUBLISHED_VOICES, lambda code, progress: voices / f"{code}.onnx")
    return "demo", PiperSpeech(DEMO_VOICES, lambda code, progress: ensure_demo_voice(code, work / "voices"))


def api_wait(engine, speech, question: Path, work: Path, repeats: int) -> dict:
    """From sending a finished spoken question to the first sound (and the first text) of the streamed answer."""
    from assistant.speech import ModelVoice
    from tests.engine_helpers import make_manager
    from tests.api_helpers import served_api
    from tests.helpers import repository_at

    host = type("Host", (), {"engine": engine})()
    dialogue = make_manager(engine, repository_at(work / "api"), speech=ModelVoice(host, speech))
    data = base64.b64encode(question.read_bytes()).decode()
    firsts, texts = [], []
    with served_api(dialogue, work, timeout=1800) as client:
        for _ in range(repeats + 1):
            started = time.perf_counter()
            stream = client.chat.completions.create(
                model="demo", stream=True, modalities=["text", "audio"], audio={"voice": "alloy", "format": "pcm16"},
                messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]}],
            )
            first_audio = first_text = None
            for chunk in stream:
                delta = chunk.choices[0].delta if chunk.choices else None
                if delta is not None and delta.content and first_text is None:
                    first_text = time.perf_counter() - started
                if delta is not None and delta.audio is not None and delta.audio.data and first_audio is None:
                    first_audio = time.perf_counter() - started
            firsts.append(first_audio)
            texts.append(first_text)
    firsts, texts = firsts[1:], texts[1:]  # the first request warms up
    return {"first_audio_s": round(statistics.median(firsts), 3), "first_text_s": round(statistics.median(texts), 3),
            "voice": dialogue.speech.label}


def page_wait(question48: Path, work: Path, seconds: float) -> dict:
    """Voice mode in Chromium with a fake microphone looping `question48`, for `seconds`; the page script's timings."""
    from playwright.sync_api import sync_playwright

    from tests.browser_helpers import CHROMIUM_FLAGS, open_page
    from tests.helpers import ready_app

    app = ready_app(work / "page", "--demo", "--data-dir", str(work / "page" / "data"), "--max-new-tokens", "400")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[*CHROMIUM_FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-audio-capture={question48}"],
            )
            page = browser.new_page()
            page.set_default_timeout(60_000)
            open_page(page, app.url)
            page.locator("#voice-toggle").click()
            time.sleep(seconds)
            # Stop while an answer is spoken: wait for sound, then press Stop.
            page.wait_for_function("() => window.__voice.playing", timeout=60_000)
            page.locator("#stop").click(force=True)
            timings = page.evaluate("window.__voice.timings")
            browser.close()
    finally:
        app.kill()
    by_kind: dict[str, list[float]] = {}
    for timing in timings:
        by_kind.setdefault(timing["kind"], []).append(timing["ms"])
    return {kind: {"median_ms": round(statistics.median(v)), "max_ms": round(max(v)), "n": len(v)} for kind, v in by_kind.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["demo", "small", "3b", "7b"], default="demo")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none")
    parser.add_argument("--voices", type=Path, help="a folder holding Piper's published voices (lessac, amy, huayan)")
    parser.add_argument("--page", action="store_true", help="also the page's voice mode in Chromium (needs espeak-ng, sox)")
    parser.add_argument("--page-seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-voice")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    import torch

    print(f"torch {torch.__version__}, {'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}, "
          f"{torch.get_num_threads()} threads", flush=True)
    kind, tts = piper(args.voices, args.work)
    report(f"rtf-piper-{kind}", rtf(tts, tts.default_voice, args.repeats), args.json)
    engine = load(args.size, args.quant, args.work)
    report(f"rtf-talker-{args.size}-{args.quant}", rtf(engine.voice, engine.voice.default_voice, args.repeats), args.json)

    question = args.work / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(question), "What colour is the car in the picture?"], check=True)
    report(f"api-talker-{args.size}", api_wait(engine, tts, question, args.work / "api-talker", args.repeats), args.json)
    engine.voice, talker = None, engine.voice  # the same model, spoken by Piper
    report(f"api-piper-{args.size}", api_wait(engine, tts, question, args.work / "api-piper", args.repeats), args.json)
    engine.voice = talker
    if args.page:
        looped = args.work / "question48.wav"
        subprocess.run(["sox", str(question), "-r", "48000", "-c", "1", str(looped), "pad", "0.3", "5"], check=True)
        report("page-demo", page_wait(looped, args.work, args.page_seconds), args.json)


if __name__ == "__main__":
    main()
