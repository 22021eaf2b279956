"""Build the tiny, randomly initialised Piper voices used by `--demo` and the tests.

A real voice's two files (an ONNX model taking Piper's inputs `input`, `input_lengths`, `scales` and giving `output`
audio, and its JSON config with espeak-ng phonemes), so Piper's own loading, phonemizing and synthesis run offline.
The model is an embedding of each phoneme into one hop of samples, stretched by the length scale: its sound is meaningless, as the demo's text is.
"""

from __future__ import annotations

import json
from pathlib import Path

from assistant.piper_speech import Voice

DEMO_VOICE_SEED = 2718
SAMPLE_RATE = 16_000
HOP = 256  # samples per phoneme id: 16 ms
DEMO_VOICES = {
    "demo": Voice("en_US-demo-x_low", "en"),
    "demo-zh": Voice("zh_CN-demo-x_low", "zh"),
}
_ESPEAK = {"en": "en-us", "zh": "cmn"}


def ensure_demo_voice(code: str, folder: Path) -> Path:
    """The model file of the demo voice `code`, built unless already there (written under temporary names first)."""
    model = Path(folder) / f"{code}.onnx"
    config = model.with_suffix(".onnx.json")
    if model.is_file() and config.is_file():
        return model
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    language = next(v.language for v in DEMO_VOICES.values() if v.code == code)
    symbols = max(max(ids) for ids in DEFAULT_PHONEME_ID_MAP.values()) + 1
    rng = np.random.default_rng(DEMO_VOICE_SEED)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, (symbols, 16)).astype(np.float32), "embedding"),
        numpy_helper.from_array(rng.normal(0, 0.5, (16, HOP)).astype(np.float32), "projection"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "noise_index"),
        numpy_helper.from_array(np.array([1, 1, -1], dtype=np.int64), "audio_shape"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "length_index"),
        numpy_helper.from_array(np.array([1.0, 1.0], dtype=np.float32), "unscaled"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "input"], ["embedded"]),
        helper.make_node("MatMul", ["embedded", "projection"], ["projected"]),
        helper.make_node("Tanh", ["projected"], ["bounded"]),
        helper.make_node("Gather", ["scales", "noise_index"], ["noise_scale"]),
        helper.make_node("Mul", ["bounded", "noise_scale"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "audio_shape"], ["audio"]),
        # Longer or shorter as length_scale says (1 / speed), as a real voice's durations are.
        helper.make_node("Gather", ["scales", "length_index"], ["length_scale"]),
        helper.make_node("Concat", ["unscaled", "length_scale"], ["resize_scales"], axis=0),
        helper.make_node("Resize", ["audio", "", "resize_scales"], ["output"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes,
        "demo_voice",
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "samples"])],
        weights,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    settings = {
        "audio": {"sample_rate": SAMPLE_RATE, "quality": "x_low"},
        "espeak": {"voice": _ESPEAK[language]},
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_id_map": DEFAULT_PHONEME_ID_MAP,
        "num_symbols": symbols,
        "num_speakers": 1,
        "speaker_id_map": {},
        "language": {"code": code.split("-")[0]},
        "dataset": "random weights",
    }
    model.parent.mkdir(parents=True, exist_ok=True)
    temporary = model.with_name(model.name + ".partial")
    onnx.save(proto, str(temporary))
    config.with_name(config.name + ".partial").write_text(json.dumps(settings, ensure_ascii=False), encoding="utf-8")
    config.with_name(config.name + ".partial").replace(config)
    temporary.replace(model)
    return model
