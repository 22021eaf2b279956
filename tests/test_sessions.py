"""What ui/sessions.py relies on in Gradio's private login code: if a Gradio upgrade changes where it keeps sessions
or how it names their cookies, these fail, instead of sign-out and password changes silently no longer ending
sessions."""

from __future__ import annotations

from http.cookies import SimpleCookie

import gradio as gr
from fastapi.testclient import TestClient

from ui.server import build_server_app
from ui.sessions import gradio_sessions


def signed_in_app():
    """A real page behind Gradio's login, as run.py serves it; (client, Gradio's app, the sign-in response)."""
    with gr.Blocks() as blocks:
        gr.Markdown("hello")
    server, gradio_app = build_server_app(
        blocks, routes=[], middleware=[], auth=lambda name, password: (name, password) == ("alice", "a password")
    )
    client = TestClient(server)
    response = client.post("/login", data={"username": "alice", "password": "a password"})
    return client, gradio_app, response


def set_cookies(response) -> dict[str, str]:
    jar = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def test_a_sign_in_is_a_token_in_gradios_sessions_carried_by_the_cookies_we_read():
    client, gradio_app, response = signed_in_app()
    assert response.status_code == 200
    cookies = set_cookies(response)
    # Gradio's own names, derived from its app's cookie_id: both are set, for HTTPS and for plain HTTP.
    assert set(cookies) >= {f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}"}
    tokens, carried = gradio_sessions(gradio_app, cookies)
    assert tokens is gradio_app.tokens  # the dict Gradio itself reads, so popping from it ends a session
    assert carried and all(tokens.get(token) == "alice" for token in carried)
    assert getattr(gradio_app, "auth", None) is not None  # Sessions.required reads it


def test_ending_a_session_in_gradios_dict_signs_the_browser_out():
    client, gradio_app, response = signed_in_app()
    cookies = set_cookies(response)
    assert client.get("/config", cookies=cookies).status_code == 200
    tokens, carried = gradio_sessions(gradio_app, cookies)
    for token in carried:
        tokens.pop(token, None)  # both cookies carry the same token
    assert client.get("/config", cookies=cookies).status_code == 401


def test_before_the_app_is_bound_nobody_has_a_session():
    assert gradio_sessions(None, {"access-token-x": "t"}) == ({}, [])
