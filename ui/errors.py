"""How errors meant for people reach the page: a handler's domain.errors.AssistantError becomes a gr.Error carrying
the same sentence, said in the language the request reads the page in (the only place the page turns them into
messages). Knows nothing of models or storage."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable

import gradio as gr

from domain.errors import AssistantError
from domain.i18n import ENGLISH, Text, say, t
from ui.i18n import language_of

# The parameter shows_errors adds to a handler that takes no gr.Request, so that Gradio passes one in.
_ADDED = "_shows_errors_request"
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def language_of_request(request) -> str:
    """The request's language; English for none, or for a stand-in without headers (a test's, a script's)."""
    if request is None or getattr(request, "headers", None) is None:
        return ENGLISH
    return language_of(request)


def said(text: Text | str, request) -> str:
    """A sentence in the language of the person who made `request`."""
    return say(text, language_of_request(request))


def shown_error(text: Text | str, request) -> gr.Error:
    """A gr.Error to raise, its sentence and its title in the request's language."""
    language = language_of_request(request)
    return gr.Error(say(text, language), title=say(t("page.toast.error"), language), print_exception=False)


def warn(text: Text | str, request) -> None:
    language = language_of_request(request)
    gr.Warning(say(text, language), title=say(t("page.toast.warning"), language))


def inform(text: Text | str, request) -> None:
    language = language_of_request(request)
    gr.Info(say(text, language), title=say(t("page.toast.info"), language))


def shows_errors(handler: Callable) -> Callable:
    """`handler` (a function or a generator function) with the AssistantError it raises shown to the person as a
    gr.Error, in the language of the request. Gradio still sees the handler's own signature (plus a gr.Request, where
    it takes none: Gradio fills a parameter by its annotation), so gr.Request and event data arrive as before, and a
    generator stays one (it streams, and closing it closes the handler)."""
    signature, index, added = _with_request(handler)
    names = list(signature.parameters)
    var_positional = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values())

    def request_of(args: tuple, kwargs: dict) -> tuple[object, tuple, dict]:
        """The request, and the arguments the handler itself takes."""
        if not added:
            return (args[index] if len(args) > index else kwargs.get(names[index])), args, kwargs
        request = kwargs.pop(_ADDED, None)
        # Gradio passes it at its place; a direct call (a test, a script) may leave it out, so where the handler
        # takes *args only a gr.Request there is taken for it.
        if len(args) > index and (not var_positional or isinstance(args[index], gr.Request)):
            request, args = args[index], args[:index] + args[index + 1 :]
        return request, args, kwargs

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args, **kwargs):
            request, args, kwargs = request_of(args, kwargs)
            try:
                yield from handler(*args, **kwargs)
            except AssistantError as failure:
                raise shown_error(failure.text, request) from None

        wrapper = stream
    else:

        @functools.wraps(handler)
        def call(*args, **kwargs):
            request, args, kwargs = request_of(args, kwargs)
            try:
                return handler(*args, **kwargs)
            except AssistantError as failure:
                raise shown_error(failure.text, request) from None

        wrapper = call
    if added:
        wrapper.__signature__ = signature
        wrapper.__annotations__ = {**getattr(handler, "__annotations__", {}), _ADDED: gr.Request}
    return wrapper


def _with_request(handler: Callable) -> tuple[inspect.Signature, int, bool]:
    """The signature Gradio is to see, the index among positional arguments where the gr.Request arrives, and whether
    shows_errors added that parameter (appended after the handler's own positional ones)."""
    signature = inspect.signature(handler)
    try:
        hints = typing.get_type_hints(handler)
    except (NameError, TypeError):
        hints = {}
    parameters = list(signature.parameters.values())
    positional = 0
    for parameter in parameters:
        if parameter.kind not in _POSITIONAL:
            break
        if hints.get(parameter.name) in (gr.Request, typing.Optional[gr.Request]):
            return signature, positional, False
        positional += 1
    # After a parameter with a default, one without is not a valid signature.
    default = None if any(p.default is not p.empty for p in parameters[:positional]) else inspect.Parameter.empty
    added = inspect.Parameter(_ADDED, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request, default=default)
    return signature.replace(parameters=[*parameters[:positional], added, *parameters[positional:]]), positional, True
