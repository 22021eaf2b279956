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
from domain.i18n import Text, t

if TYPE_CHECKING:
    from assistant.engine_contract import Engine

log = logging.getLogger(__name__)

MODEL_LOAD_FAILED = t("model.load_failed")


class Phase(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class HostState:
    phase: Phase
    message: Text | str  # said in the reader's language
    fraction: float | None = None


class ModelHost:
    """`family`, when known before loading (a checkpoint on disk), lets turns be checked while the model loads."""

    def __init__(
        self, load: Callable[[Callable[[Text | str, float | None], None]], Engine], family: Capabilities | None = None
    ):
        self._load = load
        self._family = family
        self._state = HostState(Phase.LOADING, t("progress.starting"))
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

    def _progress(self, message: Text | str, fraction: float | None) -> None:
        self._state = HostState(Phase.LOADING, message, fraction)
        log.info("%s", message)

    def _run(self) -> None:
        try:
            engine = self._load(self._progress)
        except AssistantError as error:
            self._state = HostState(Phase.FAILED, error.text)
            log.error("%s", error)
        except Exception:  # an unexpected failure: the page says so, the log keeps the traceback
            log.exception("model loading failed")
            self._state = HostState(Phase.FAILED, MODEL_LOAD_FAILED)
        else:
            self._engine = engine
            info = engine.info
            ready = t("model.ready", model=info.shown_name or info.model, quant=info.quant, device=info.device)
            ready = t("model.ready.voice", ready=ready, voice=info.voice_note) if info.voice_note else ready
            self._state = HostState(Phase.READY, ready, 1.0)
            log.info("model ready: %s", self._state.message)
        finally:
            self._ready.set()
