"""Dialogue manager, model engine and media handling for the local multimodal assistant."""
