"""The chat page: handler functions, then a Blocks declaration that only wires them.

The page streams only what changes: attachments are served from the blob store as static files (never
copied or hashed per update) and answer updates are coalesced to at most one per MIN_UPDATE_INTERVAL_S.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from assistant.dialogue import (
    DialogueManager,
    Queued,
    ReplyDelta,
    ReplyFinished,
    UserTurnSaved,
    WaitingForModel,
    WaitingForTranscript,
)
from assistant.model_host import ModelHost, Phase
from assistant.validation import clean_filename
from domain.errors import AssistantError, InvalidInput
from domain.i18n import t
from domain.types import MediaKind, Status
from ui import api_keys as api_key_panel
from ui import branches, composer, render, script_api, settings, sidebar, voice
from ui.errors import shown_error, shows_errors, warn
from ui.settings import fields_from_settings, settings_from_fields, voice_choices
from ui.sidebar import SidebarHandlers
from ui.exports import ExportStore
from ui.files import chat_view
from ui.i18n import label, language_of, switch_js
from ui.transfer import TransferHandlers
from ui.uploads import discard_uploads
from ui.voice import VoiceOut, VoiceSessions

log = logging.getLogger(__name__)

TITLE = t("page.title")  # the tab's title is set in the page's language once it loads (ui.i18n.switch_js)
# At most ~20 updates a second: faster is invisible, and each one costs the server a round of work.
MIN_UPDATE_INTERVAL_S = 0.05
# A turn that failed for a reason of the app's own (the details go to the log).
TURN_FAILED = t("turn.failed")
# Uploads left in a composer that was never sent are swept after a day (checked hourly).
UPLOAD_SWEEP = (3600, 86400)


class ChatHandlers:
    """Event handlers; per-browser-session state lives in gr.State or is keyed by session hash. The turn handlers
    take the settings panel's fields last (`*fields`, SettingsPanel.fields) and read them as one GenerationSettings."""

    def __init__(
        self,
        dialogue: DialogueManager,
        host: ModelHost,
        demo: bool,
        owner_of: Callable[[str | None], int | None] = lambda name: None,
        voice: VoiceSessions | None = None,
    ):
        self._dialogue = dialogue
        self.voice = voice or VoiceSessions()
        self._owner_of = owner_of
        self.host = host
        self.demo = demo
        self.sidebar = SidebarHandlers(self.access)
        self.branch_action = branches.MessageLinks(self.access, self.sidebar).act
        self._stops: dict[str, threading.Event] = {}

    @shows_errors
    def owner(self, request: gr.Request) -> int | None:
        """The request's signed-in user's id (None: no accounts, the one local person); with accounts, a request
        without a valid session gets a message and nothing else."""
        return self._owner_of(getattr(request, "username", None))

    def access(self, request: gr.Request) -> DialogueManager:
        """The dialogue manager as the request's signed-in user sees it (everything, with no accounts)."""
        return self._dialogue.for_owner(self.owner(request))

    def on_load(self, request: gr.Request):
        language, conversations = language_of(request), self.sidebar.list_for(self.access(request), None, archived=False)
        return render.status_markdown(self.host.state, self.demo, language), conversations, voice_choices(self._dialogue.speech, language)

    def refresh_status(self, request: gr.Request):
        """While the model loads: its progress, and then the voices it speaks with (its own, once loaded)."""
        state, language = self.host.state, language_of(request)
        return (
            render.status_markdown(state, self.demo, language),
            gr.Timer(active=state.phase is Phase.LOADING),
            voice_choices(self._dialogue.speech, language),
        )

    def new_chat(self):
        # A draft in the composer stays: the user may have typed it for the new chat. Settings go back to defaults.
        return None, [], gr.Radio(value=None), gr.Group(visible=False), *fields_from_settings(None)

    @shows_errors
    def open_conversation(self, conversation_id: str | None, request: gr.Request):
        if not conversation_id:
            return None, []
        dialogue = self.access(request)
        return conversation_id, chat_view(dialogue, dialogue.open_messages(conversation_id), request)

    def stop(self, request: gr.Request):
        event = self._stops.get(request.session_hash)
        if event is not None:
            event.set()

    @shows_errors
    def respond(self, value: dict | None, conversation_id: str | None, archived: bool, request: gr.Request, *fields):
        """Yields (chatbot, textbox, conversation_id, conversation list, stop, new chat, search results, voice out) as the
        turn goes on."""
        value = value or {}
        text = value.get("text") or ""
        paths = [str(path) for path in value.get("files") or []]
        settings = settings_from_fields(*fields)
        if self.voice.active(request.session_hash):
            try:
                self.voice.check(paths, self._dialogue.max_audio_seconds)
            except InvalidInput:
                yield gr.skip(), {"text": text, "files": [p for p in paths if Path(p).exists()]}, *[gr.skip()] * 6
                raise
        stop = self._stops[request.session_hash] = threading.Event()
        dialogue = self.access(request)
        events = dialogue.send(conversation_id, text, [(Path(p), Path(p).name) for p in paths], stop, settings)
        yield from self._turn(dialogue, events, archived, request, paths, text, settings.voice)

    @shows_errors
    def regenerate(self, conversation_id: str | None, archived: bool, request: gr.Request, *fields):
        """The chat's ↻ button: answer the last question again; the earlier answer stays as a version."""
        if not conversation_id:
            raise InvalidInput(t("conversation.open_first"))
        settings = settings_from_fields(*fields)
        stop = self._stops[request.session_hash] = threading.Event()
        dialogue = self.access(request)
        events = dialogue.regenerate(conversation_id, stop, settings)
        yield from self._turn(dialogue, events, archived, request, voice=settings.voice)

    @shows_errors
    def edit(self, conversation_id: str | None, archived: bool, edited: gr.EditData, request: gr.Request, *fields):
        """A user message edited in the chat: continue from the new version; the old branch stays."""
        dialogue = self.access(request)
        messages = dialogue.open_messages(conversation_id) if conversation_id else []
        if not 0 <= edited.index < len(messages):
            raise InvalidInput(t("message.gone"))
        settings = settings_from_fields(*fields)
        stop = self._stops[request.session_hash] = threading.Event()
        text = edited.value if isinstance(edited.value, str) else ""
        events = dialogue.edit(messages[edited.index].id, text, stop, settings)
        yield from self._turn(dialogue, events, archived, request, voice=settings.voice)

    @shows_errors
    def after_open(self, conversation_id: str | None, request: gr.Request):
        """The open conversation's actions and settings (defaults for a new chat)."""
        dialogue = self.access(request)
        settings = dialogue.get_conversation(conversation_id).settings if conversation_id else None
        return *self.sidebar.actions_for(dialogue, conversation_id, request), *fields_from_settings(settings)

    def _turn(
        self, dialogue, events, archived: bool, request: gr.Request, paths: list[str] = (), text: str = "", voice=None
    ):
        """Show a turn's events as they come (and, in voice mode, speak its answer in `voice`); every way it can end
        unlocks the page (see enable_input). Its callers show the AssistantError it lets through (@shows_errors)."""
        history: list[dict] = []
        last_update = 0.0
        language, stop = language_of(request), self._stops.get(request.session_hash)
        spoken = self.voice.out_for(dialogue, request.session_hash, stop, voice, language)
        finished = None
        try:
            for event in events:
                if isinstance(event, UserTurnSaved):
                    discard_uploads(paths)  # stored as blobs now
                    conversation_id = event.conversation.id
                    # Up to the question: a regenerated answer replaces the one shown.
                    history = chat_view(dialogue, dialogue.get_path(event.message.id), request, answering=True)
                    history.append({"role": "assistant", "content": render.THINKING})
                    # While answering, opening another conversation (list or search result) would mix two chats.
                    yield (
                        history,
                        gr.MultimodalTextbox(value=None, interactive=False),
                        conversation_id,
                        self.sidebar.list_for(dialogue, conversation_id, archived, interactive=False),
                        gr.Button(interactive=True),
                        gr.Button(interactive=False),
                        gr.Radio(interactive=False),
                        gr.skip(),
                    )
                    continue
                if isinstance(event, WaitingForModel):
                    history[-1] = {"role": "assistant", "content": render.waiting_text(event.status, language)}
                elif isinstance(event, WaitingForTranscript):
                    history[-1] = {"role": "assistant", "content": render.transcript_wait_text(event.status, language)}
                elif isinstance(event, Queued):
                    history[-1] = {"role": "assistant", "content": render.queued_text(event.ahead, language)}
                elif isinstance(event, ReplyDelta):
                    if spoken is not None:
                        spoken.speaker.feed(event.text)
                    if time.monotonic() - last_update < MIN_UPDATE_INTERVAL_S:
                        continue  # the next update (or ReplyFinished) carries this text too
                    history[-1] = {"role": "assistant", "content": render.streaming_text(event.text)}
                elif isinstance(event, ReplyFinished):
                    finished = event.message
                    # The answer as it ended, also while storing it waits for a full disk or a locked database.
                    stored = dialogue.open_messages(event.message.conversation_id)
                    history = chat_view(dialogue, [event.message if m.id == event.message.id else m for m in stored], request)
                    if event.message.status is Status.ERROR:
                        warn(event.message.error or t("answer.failed.plain"), request)
                last_update = time.monotonic()
                yield history, *[gr.skip()] * 6, (spoken and spoken.update()) or gr.skip()
            if spoken is not None and finished is not None:
                yield from self._speak_to_the_end(dialogue, spoken, finished, request)
        except InvalidInput as error:
            # Refused before anything was saved: the text stays; a file at fault leaves the composer (and the disk).
            if error.filename is not None:
                bad = [p for p in paths if clean_filename(Path(p).name) == error.filename]
                discard_uploads(bad)
                kept = [p for p in paths if p not in bad]
                yield gr.skip(), {"text": text, "files": kept}, *[gr.skip()] * 6
            raise
        except AssistantError:
            raise  # the person's to read, not a fault of the app
        except Exception:  # a fault of the app: a sentence for the person, the details for the log; the page unlocks after
            log.exception("the turn failed before its answer started")
            raise shown_error(TURN_FAILED, request) from None
        finally:
            events.close()
            self._stops.pop(request.session_hash, None)
            if spoken is not None and not spoken.speaker.wait(0):  # the page left or the turn failed: silence
                spoken.speaker.stop.set()
                spoken.speaker.close("")

    def _speak_to_the_end(self, dialogue, spoken: VoiceOut, message, request: gr.Request):
        for update in spoken.to_the_end(dialogue, message):
            yield gr.skip(), *[gr.skip()] * 6, update
        if spoken.kept:  # the bubble shows the sound it was spoken with
            yield chat_view(dialogue, dialogue.open_messages(message.conversation_id), request), *[gr.skip()] * 7

    def set_voice_mode(self, action: str, request: gr.Request) -> None:
        self.voice.set_mode(action or "", request.session_hash, self._dialogue.speech)

    def refresh_transcripts(self, conversation_id: str | None, request: gr.Request):
        """(chat, transcript timer), after a turn or a conversation opens and then each second while transcripts
        are pending: the chat again if it holds audio (a transcript may have arrived since it was drawn), and the
        timer on while any is still being made. Never while a turn is being shown."""
        if not conversation_id or request.session_hash in self._stops:
            return gr.skip(), gr.skip()
        dialogue = self.access(request)
        try:
            messages = dialogue.open_messages(conversation_id)
        except AssistantError:
            return gr.skip(), gr.Timer(active=False)
        has_audio = any(a.kind in render.HEARD for m in messages for a in m.attachments)
        chat = chat_view(dialogue, messages, request) if has_audio else gr.skip()
        return chat, gr.Timer(active=dialogue.transcript_pending(messages))

    def enable_input(self, conversation_id: str | None, archived: bool, request: gr.Request):
        """Runs after every turn, also one that failed (`.then`, not `.success`), to unlock the page."""
        return (
            gr.MultimodalTextbox(interactive=True),
            self.sidebar.list_for(self.access(request), conversation_id, archived),
            gr.Button(interactive=False),
            gr.Button(interactive=True),
            gr.Radio(interactive=True),
        )


def build_app(
    dialogue: DialogueManager,
    host: ModelHost,
    *,
    demo: bool,
    owner_of: Callable[[str | None], int | None] = lambda name: None,
    api_keys=None,
    exports: ExportStore | None = None,
) -> gr.Blocks:
    """The page. `owner_of` maps a signed-in user's name to their id (None: no accounts, one local person; NotSignedIn:
    the app has accounts and the name is not a user); `api_keys` (storage.api_keys.ApiKeyRepository), when given, adds
    the panel where users manage theirs; `exports` keeps exported zips for ui.exports.export_route to serve."""
    handlers = ChatHandlers(dialogue, host, demo, owner_of)
    side = handlers.sidebar
    accepted = dialogue.accepts()  # the composer offers only what the model takes (audio: heard, or as a transcript)
    sources, file_types = composer.offers(accepted)
    # One sentence per combination ("page.composer.image_audio"...): what may be attached, and whether recorded.
    placeholder = label("page.composer." + ("_".join(file_types) or "text"))
    if exports is None:  # a page built without run.py (tests): kept out of Gradio's folders, which it serves by path
        exports = ExportStore(Path(tempfile.gettempdir()) / "local-assistant-exports")
    transfer = TransferHandlers(handlers.access, exports, handlers.owner)
    with gr.Blocks(title=str(TITLE), analytics_enabled=False, delete_cache=UPLOAD_SWEEP) as app:
        conversation_id = gr.State(None)
        bar = sidebar.build_sidebar()
        status = gr.Markdown(label("page.status.connecting"), elem_id="model-status")  # on_load says the rest
        chatbot = gr.Chatbot(elem_id="chat", show_label=False, height="65vh", buttons=["copy"], editable="user")
        branch_action = gr.Textbox(visible="hidden", elem_id="branch-action")
        with gr.Row(equal_height=True):
            textbox = gr.MultimodalTextbox(
                sources=sources,
                file_types=file_types,
                file_count="multiple",
                placeholder=placeholder,
                show_label=False,
                elem_id="composer",
                lines=1,
                max_lines=12,
                autofocus=True,
                scale=12,
            )
            stop = gr.Button(label("page.stop"), elem_id="stop", interactive=False, scale=1, min_width=90)
            voice.toggle_button(visible="microphone" in sources)  # hands-free voice mode, where the microphone is
        voice_controls = voice.build_controls(dialogue)
        if MediaKind.VIDEO not in accepted:
            composer.refuse_videos(app, dialogue)
        panel = settings.build_settings_panel()
        if api_keys is not None:
            api_key_panel.wire(api_key_panel.build_api_key_panel(), api_key_panel.ApiKeyHandlers(api_keys, owner_of), app)
        timer = gr.Timer(1.0)
        transcript_timer = gr.Timer(1.0, active=False)
        actions = [bar.actions, bar.rename, bar.pin, bar.archive, *panel.fields]

        app.load(handlers.on_load, outputs=[status, bar.conversations, panel.voice])
        app.load(None, js=branches.BRANCH_LINKS_JS)
        app.load(None, js=switch_js())
        voice.wire(app, voice_controls, handlers.set_voice_mode, handlers.voice.forget_page)
        timer.tick(handlers.refresh_status, outputs=[status, timer, panel.voice])
        refresh_transcripts = dict(
            fn=handlers.refresh_transcripts, inputs=[conversation_id], outputs=[chatbot, transcript_timer], show_progress="hidden"
        )
        transcript_timer.tick(**refresh_transcripts)
        turn_outputs = [chatbot, textbox, conversation_id, bar.conversations, stop, bar.new_chat, bar.results, voice_controls.out]
        unlock_outputs = [textbox, bar.conversations, stop, bar.new_chat, bar.results]
        for trigger, handler, inputs in (
            (textbox.submit, handlers.respond, [textbox, conversation_id, bar.show_archived, *panel.fields]),
            (chatbot.retry, handlers.regenerate, [conversation_id, bar.show_archived, *panel.fields]),
            (chatbot.edit, handlers.edit, [conversation_id, bar.show_archived, *panel.fields]),
        ):
            trigger(handler, inputs=inputs, outputs=turn_outputs, concurrency_limit=16, show_progress="hidden").then(
                handlers.enable_input, inputs=[conversation_id, bar.show_archived], outputs=unlock_outputs
            ).then(handlers.after_open, inputs=[conversation_id], outputs=actions).then(**refresh_transcripts)
        branch_action.change(
            handlers.branch_action,
            inputs=[branch_action, conversation_id, bar.show_archived],
            outputs=[conversation_id, chatbot, bar.conversations],
            show_progress="hidden",
        ).then(handlers.after_open, inputs=[conversation_id], outputs=actions)
        stop.click(handlers.stop, concurrency_limit=None, show_progress="hidden")
        new_chat_outputs = [conversation_id, chatbot, bar.conversations, bar.actions, *panel.fields]
        bar.new_chat.click(handlers.new_chat, outputs=new_chat_outputs)
        # The chat's own trash button only empties the display: make it start a new chat, like the button.
        chatbot.clear(handlers.new_chat, outputs=new_chat_outputs)
        bar.conversations.input(
            handlers.open_conversation, inputs=[bar.conversations], outputs=[conversation_id, chatbot]
        ).then(handlers.after_open, inputs=[conversation_id], outputs=actions).then(**refresh_transcripts)

        # Search: results as you type; choosing one opens its conversation at that message.
        # .change, not .input: text from an input method (Chinese, Japanese, Korean) or a paste counts too.
        bar.search.change(
            side.search, inputs=[bar.search], outputs=[bar.results], trigger_mode="always_last", show_progress="hidden"
        )
        bar.results.input(
            side.open_result, inputs=[bar.results], outputs=[conversation_id, chatbot, bar.scroll_to]
        ).then(
            side.conversation_list, inputs=[conversation_id, bar.show_archived], outputs=[bar.conversations]
        ).then(handlers.after_open, inputs=[conversation_id], outputs=actions).then(
            None, inputs=[bar.scroll_to], js=sidebar.SCROLL_TO_MESSAGE_JS
        )

        # The open conversation's actions.
        bar.show_archived.change(
            side.conversation_list, inputs=[conversation_id, bar.show_archived], outputs=[bar.conversations]
        )
        target = [bar.conversations, conversation_id]  # the selected conversation, else the one shown
        bar.rename.submit(side.rename, inputs=[*target, bar.rename, bar.show_archived], outputs=[bar.conversations])
        bar.pin.click(side.toggle_pin, inputs=[*target, bar.show_archived], outputs=[bar.conversations, bar.pin])
        bar.archive.click(
            side.toggle_archive, inputs=[*target, bar.show_archived], outputs=[bar.conversations, bar.archive]
        )
        bar.delete.click(side.ask_delete, inputs=target, outputs=[bar.confirm_row])
        bar.cancel_delete.click(lambda: gr.Row(visible=False), outputs=[bar.confirm_row])
        bar.confirm_delete.click(
            side.delete,
            inputs=[*target, bar.show_archived],
            outputs=[conversation_id, chatbot, bar.conversations, bar.confirm_row, bar.actions],
        ).then(handlers.after_open, inputs=[conversation_id], outputs=actions)

        # Export and import.
        bar.export.click(transfer.export, inputs=target, outputs=[bar.download])
        bar.export_all.click(transfer.export_all, outputs=[bar.download])
        bar.import_button.upload(transfer.import_file, inputs=[bar.import_button], outputs=[bar.import_button]).then(
            side.conversation_list, inputs=[conversation_id, bar.show_archived], outputs=[bar.conversations]
        )

        # Scripts (gradio_client) get one documented endpoint; the events above are the page's own steps.
        script_api.declare(script_api.ScriptApi(handlers.access))
        script_api.hide_internal_events(app)
    return app
