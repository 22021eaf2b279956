"""Loads the engine in a background thread so the page is up before the model is; reports progress.

Knows engines only by their contract (assistant.engine_contract), so importing it loads no model library.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from assistant.families.capabilities import Capabilities
from domain.errors import AssistantError

if TYPE_CHECKING:
    from assistant.engine_contract import Engine

log = logging.getLogger(__name__)

MODEL_LOAD_FAILED = (
    "The model failed to load because of a fault in the app or a library it uses; the console log says what happened. "
    "Restart the app, or start it with --demo to check that the rest works."
)


class Phase(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class HostState:
    phase: Phase
    message: str
    fraction: float | None = None


class ModelHost:
    """`family`, when known before loading (a checkpoint on disk), lets turns be checked while the model loads."""

    def __init__(
        self, load: Callable[[Callable[[str, float | None], None]], Engine], family: Capabilities | None = None
    ):
        self._load = load
        self._family = family
        self._state = HostState(Phase.LOADING, "Starting…")
        self._engine: Engine | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)

    def start(self) -> ModelHost:
        self._thread.start()
        return self

    @property
    def state(self) -> HostState:
        return self._state

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def family(self) -> Capabilities | None:
        """What the model accepts: known once loaded, or from the start when given."""
        return self._engine.family if self._engine is not None else self._family

    def wait(self, timeout: float | None = None) -> bool:
        """True once loading has ended (ready or failed)."""
        return self._ready.wait(timeout)

    def _progress(self, message: str, fraction: float | None) -> None:
        self._state = HostState(Phase.LOADING, message, fraction)
        log.info(message)

    def _run(self) -> None:
        try:
            engine = self._load(self._progress)
        except AssistantError as error:
            self._state = HostState(Phase.FAILED, str(error))
            log.error("%s", error)
        except Exception:  # an unexpected failure: the page says so, the log keeps the traceback
            log.exception("model loading failed")
            self._state = HostState(Phase.FAILED, MODEL_LOAD_FAILED)
        else:
            self._engine = engine
            info = engine.info
            voice = f" · {info.voice_note}" if info.voice_note else ""
            self._state = HostState(Phase.READY, f"{info.model} · {info.quant} · {info.device}{voice}", 1.0)
            log.info("model ready: %s", self._state.message)
        finally:
            self._ready.set()
