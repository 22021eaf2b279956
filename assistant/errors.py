"""Errors whose message is meant for the person using the app; only ui/ (and the API) display them."""


class AssistantError(Exception):
    """Base class: str(error) is a complete sentence a user can act on."""


class InvalidInput(AssistantError):
    """The message or one of its files breaks a limit or cannot be read."""


class ModelLoadError(AssistantError):
    """The model could not be fetched or loaded."""


class GenerationError(AssistantError):
    """Generation failed or stopped responding."""


class ConversationNotFound(AssistantError):
    """No conversation has the given id."""
