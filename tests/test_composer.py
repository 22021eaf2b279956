"""What the composer offers to attach, from what the model takes."""

from __future__ import annotations

from domain.types import MediaKind
from ui import composer


def test_the_composer_offers_what_the_model_takes_and_says_so():
    every = frozenset(MediaKind)
    assert composer.offers(every) == (["upload", "microphone"], ["image", "audio", "video"])
    assert composer.offers(frozenset({MediaKind.IMAGE, MediaKind.VIDEO})) == (["upload"], ["image", "video"])
    assert composer.offers(frozenset({MediaKind.AUDIO})) == (["upload", "microphone"], ["audio"])
