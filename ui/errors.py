"""How errors meant for people reach the page: a handler's domain.errors.AssistantError becomes a gr.Error carrying
the same sentence (the only place the page turns them into messages). Knows nothing of models or storage."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import gradio as gr

from domain.errors import AssistantError


def shows_errors(handler: Callable) -> Callable:
    """`handler` (a function or a generator function) with the AssistantError it raises shown to the person as a
    gr.Error with the same message. Gradio still sees the handler's own signature, so gr.Request and event data
    arrive as before, and a generator stays one (it streams, and closing it closes the handler)."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except AssistantError as error:
                raise gr.Error(str(error), print_exception=False) from None

        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except AssistantError as error:
            raise gr.Error(str(error), print_exception=False) from None

    return call
