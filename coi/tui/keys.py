"""Keys in the order they were pressed, each one handled before the next: bursts made safe.

A keyboard-wedge scanner, or a password manager, types a burst: dozens of key presses a few
milliseconds apart or less, often read from the terminal in one go. Textual handles a key in
two halves that run at different times:

1. the App takes the key from its queue, runs the *priority* bindings, and posts the key to the
   widget focused at that moment (``App.on_event`` -> ``_forward_event``); then it takes the next
   key from its queue at once;
2. the widget handles the key (an ``Input`` inserts a printable character and stops there); a key
   it does not handle bubbles up, one message queue per ancestor, back to the App's queue, and
   only then does the App resolve the ordinary bindings (``App._on_key``): Tab (focus next), Enter
   (an ``Input``'s submit), Escape, ctrl+s. And ``Widget.focus()`` is itself a callback queued on
   the App.

So in a burst the App has already handed every following key to the old widget before the Tab
moves the focus: ``maya<Tab>secret<Enter>`` puts ``mayasecret`` into the user-id field, in clear
text, and the focus moves afterwards. Enter that submits a field and moves on (its
``Input.Submitted`` travels up to the screen, whose handler focuses the next field) loses the
same race, and so does Backspace (a binding) against the characters after it.

:class:`KeyRouter` is the one seam that fixes this for every screen. The app gives it every key
and paste as they arrive (``CoiApp.on_event``); it hands them back to Textual one at a time, and
hands over the next only when the app has settled: the App has handled the key, and no message
pump of the app has a message or a callback waiting (the key's bubbling, its bindings, the
messages they posted and the focus change they asked for are all done). Each key thus reaches
the widget that has the focus as of the key before it, as if it had been typed slowly; nothing
is dropped or reordered. Each key's arrival time (``Event.time``, taken when the terminal's bytes
were read) is kept, so a widget can still tell a scanner's burst from typing.

Settling looks at Textual internals (``App._registry``, each pump's ``_message_queue`` and
``_next_callbacks``); ``tests/test_tui_bursts.py`` drives bursts through the real app and fails
if a Textual upgrade changes them. A key that never settles (a handler busy for longer than
``SETTLE_CAP_S``) lets the next key through rather than stall input.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from textual import events

if TYPE_CHECKING:
    from textual.app import App

SETTLE_CAP_S = 0.5  # a key whose handling takes longer lets the next one through
QUIET_CHECKS = 2  # consecutive quiet looks (one event-loop turn apart) that count as settled

Routed = events.Key | events.Paste


class KeyRouter:
    """Queues the app's keys and pastes and hands them to Textual one at a time, in order."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self._waiting: deque[Routed] = deque()
        self._current: Routed | None = None
        self._handled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0  # keys and pastes handed to Textual (for tests and the benchmark)

    def take(self, event: events.Event) -> bool:
        """True when ``event`` is a key or paste arriving from the terminal: it is queued and
        comes back through :meth:`is_current`; False for anything the app handles as usual."""
        if not isinstance(event, events.Key | events.Paste) or event.is_forwarded:
            return False
        if event is self._current:
            return False
        self._waiting.append(event)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="coi key router")
        return True

    def is_current(self, event: events.Event) -> bool:
        """Whether ``event`` is the key being handed back now (the app handles it as Textual
        would, then calls :meth:`handled`)."""
        return event is self._current

    def handled(self, event: events.Event) -> None:
        """The app has done its part for ``event`` (priority bindings, forwarding)."""
        if event is self._current:
            self._handled.set()

    @property
    def pending(self) -> int:
        """Keys and pastes received and not yet handed over."""
        return len(self._waiting) + (self._current is not None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            event = self._waiting.popleft()
            self._current = event
            self._handled.clear()
            deadline = loop.time() + SETTLE_CAP_S
            if not self.app.post_message(event):  # the app is closing: drop the rest
                self._waiting.clear()
                break
            try:
                await asyncio.wait_for(self._handled.wait(), SETTLE_CAP_S)
            except TimeoutError:
                pass
            await self._settle(deadline)
            self.delivered += 1
        self._current = None

    async def _settle(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        quiet = 0
        while quiet < QUIET_CHECKS and loop.time() < deadline:
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._quiet() else 0

    def _quiet(self) -> bool:
        """No message pump of the app has a message or a callback waiting."""
        app = self.app
        for pump in (app, *app._registry):
            if pump._closing or pump._closed:
                continue
            if (not pump._message_queue.empty() or pump._pending_message is not None
                    or pump._next_callbacks):
                return False
        return True
