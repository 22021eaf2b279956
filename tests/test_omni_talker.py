"""Qwen2.5-Omni speaking with its own voice: the whole model loaded when speech is on, its Talker fed what generation
would have fed it, sentence by sentence, and the Thinker alone (Piper speaking) when its voice cannot be had."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from assistant.loader import ModelSpec, Quant, load_engine, speaks_itself


@pytest.fixture(scope="module")
def speaking_engine(demo_model_dir):
    return load_engine(ModelSpec(str(demo_model_dir), Quant.NONE, demo=True, speech="on"), lambda *_: None, max_new_tokens=8)


def test_speech_on_loads_the_whole_model_and_it_speaks_in_the_published_speakers(speaking_engine):
    from assistant.omni_talker import RATE, OmniTalker

    talker = speaking_engine.voice
    assert isinstance(talker, OmniTalker)
    assert talker.voices == ("Chelsie", "Ethan") and talker.resolve("alloy") == "Chelsie"
    assert str(speaking_engine.info.voice_note) == "speaks with its own voice (Qwen2.5-Omni Talker)"
    assert type(speaking_engine.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    parts = list(talker.speak("Hello there. 你好。", "Ethan"))
    assert [(p.text, p.rate, p.voice) for p in parts] == [("Hello there.", RATE, "Ethan"), ("你好。", RATE, "Ethan")]
    for part in parts:
        assert part.samples.dtype == np.float32 and 0.5 < part.seconds <= 3.0 and np.abs(part.samples).max() > 0.1
    slower = list(talker.speak("Hello there.", "Chelsie", speed=0.5))[0]
    assert slower.seconds > 1.5 * parts[0].seconds
    with pytest.raises(ValueError):
        talker.resolve("Alice")


def test_the_talker_hears_the_hidden_states_generation_would_have_given_it(speaking_engine):
    """The Thinker's hidden states for a reply, from one forward pass with explicit positions (as OmniTalker computes
    them), equal those its generation produced token by token (what transformers' generate feeds the Talker)."""
    talker = speaking_engine.voice
    thinker = talker.model.thinker
    prompt = torch.tensor([talker._prompt])
    with torch.inference_mode():
        generated = thinker.generate(
            input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False,
            output_hidden_states=True, return_dict_in_generate=True,
        )
        reply = generated.sequences[:, prompt.shape[1]:]
        stepwise = torch.cat([generated.hidden_states[0][-1]] + [h[-1] for h in generated.hidden_states[1:]], dim=1)
        ids = torch.cat([prompt, reply[:, :-1]], dim=1)
        length = ids.shape[1]
        positions = torch.arange(length).view(1, 1, length).expand(3, 1, length)
        whole = thinker.model(inputs_embeds=thinker.get_input_embeddings()(ids), position_ids=positions,
                              output_hidden_states=True, use_cache=False).hidden_states[-1]
    torch.testing.assert_close(whole, stepwise, rtol=1e-4, atol=1e-4)


def test_without_its_speakers_file_the_thinker_alone_loads_and_says_why(demo_model_dir, tmp_path):
    folder = tmp_path / "no-speakers"
    shutil.copytree(demo_model_dir, folder)
    (folder / "spk_dict.pt").unlink()
    engine = load_engine(ModelSpec(str(folder), Quant.NONE, demo=True, speech="on"), lambda *_: None, max_new_tokens=4)
    assert engine.voice is None
    assert "could not be loaded (the log says why), so Piper speaks its answers" in str(engine.info.voice_note)
    off = load_engine(ModelSpec(str(demo_model_dir), Quant.NONE, demo=True, speech="off"), lambda *_: None, max_new_tokens=4)
    assert off.voice is None and off.info.voice_note == ""


def test_a_model_speaks_for_itself_when_asked_or_on_a_gpu():
    assert speaks_itself("on", cuda=False, demo=False)
    assert speaks_itself("auto", cuda=True, demo=False) and speaks_itself("auto", cuda=False, demo=True)
    assert not speaks_itself("auto", cuda=False, demo=False)  # a real Talker on a CPU is slower than speech
    assert not speaks_itself("off", cuda=True, demo=True)


def test_the_page_and_api_voice_follows_the_loaded_model(speaking_engine, demo_speech):
    from types import SimpleNamespace

    from assistant.speech import ModelVoice

    host = SimpleNamespace(engine=None)
    voice = ModelVoice(host, demo_speech)
    assert voice.voices == ("demo", "demo-zh")  # before the model is loaded: Piper
    host.engine = speaking_engine
    assert voice.voices == ("Chelsie", "Ethan") and voice.label == "Qwen2.5-Omni Talker"
    assert [p.voice for p in voice.speak("Hi there.", "demo")] == ["Chelsie"]  # a voice it lacks: its default


def test_stop_silences_the_talker_mid_sentence(speaking_engine):
    import threading
    import time

    talker = speaking_engine.voice
    sentence = "This one sentence goes on for a long while, " * 4 + "and ends here."
    started = time.perf_counter()
    assert list(talker.speak(sentence, "Chelsie"))  # the demo's Talker speaks it to its longest
    whole = time.perf_counter() - started
    stop = threading.Event()
    threading.Timer(whole / 10, stop.set).start()
    started = time.perf_counter()
    assert list(talker.speak(sentence, "Chelsie", stop=stop)) == []
    assert time.perf_counter() - started < whole / 2


def test_auto_loads_the_voice_only_where_the_gpus_free_memory_holds_it_too(demo_model_dir, monkeypatch):
    from assistant.loader import VOICE_HEADROOM_BYTES, voice_fits

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (VOICE_HEADROOM_BYTES, 80 * 2**30))
    assert not voice_fits(demo_model_dir, Quant.NONE)  # the headroom alone fills it
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (VOICE_HEADROOM_BYTES + 2**30, 80 * 2**30))
    assert voice_fits(demo_model_dir, Quant.NF4)  # the demo's weights are a few MB
