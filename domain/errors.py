"""Errors whose message is meant for the person using the app; only ui/ (and the API) display them."""

from __future__ import annotations

from domain.i18n import ENGLISH, Text, say


class AssistantError(Exception):
    """Base class: str(error) is a complete English sentence a user can act on; `said(language)` is it in theirs.

    New code passes a `domain.i18n.Text` (a key and its parameters), so the page can say it in Chinese; a plain str
    is said as it is in every language.
    """

    def __init__(self, message: str | Text = "", *args):
        super().__init__(message, *args)
        self.text = message

    def __str__(self) -> str:
        return say(self.text, ENGLISH)

    def said(self, language: str) -> str:
        return say(self.text, language)


class InvalidInput(AssistantError):
    """The message or one of its files breaks a limit or cannot be read; `filename` names the file at fault."""

    def __init__(self, message: str | Text, filename: str | None = None):
        super().__init__(message)
        self.filename = filename


class ModelLoadError(AssistantError):
    """The model could not be fetched or loaded."""


class GenerationError(AssistantError):
    """Generation failed or stopped responding."""


class ConversationNotFound(AssistantError):
    """No conversation has the given id."""


class MessageNotFound(AssistantError):
    """No message has the given id."""


class ConversationBusy(AssistantError):
    """The conversation has an answer in progress, so it cannot be changed that way now."""


class EngineUnavailable(GenerationError):
    """The generation server (a remote engine) failed, refused or could not be reached: not this app's fault."""


class ServiceUnavailable(AssistantError):
    """A fault of the machine, not of the request or the app: the disk is full, the database is busy or away.

    `retry_after_s` is how long a client should wait before trying again.
    """

    def __init__(self, message: str | Text, retry_after_s: int = 5):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotSignedIn(AssistantError):
    """The app has accounts and the request carries no valid session (signed out, or the account or password changed)."""


class SpeechUnavailable(AssistantError):
    """No sound can be made: speech is off, or the voice's files cannot be fetched or loaded; says which."""
