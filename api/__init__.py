"""The OpenAI-compatible HTTP API (`/v1/models`, `/v1/chat/completions`) beside the page."""
