"""The Gradio web UI; holds no model or SQL code."""
