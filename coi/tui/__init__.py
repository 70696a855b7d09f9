"""The coi terminal UI (Textual): the app (:mod:`coi.tui.app`), its screens and widgets, and
what the screens may ask of the app (:mod:`coi.tui.host`). It calls the service only."""
