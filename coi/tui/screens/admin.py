"""Users and roles: enrol, revoke, reset a key (a new key under a new password), unlock; and
erasing a patient's identifiers (their key in the PHI store destroyed, witnessed).

Each action is signed by the administrator (password again) and is a ledger entry; the ledger
service refuses what an administrator may not do.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from coi.service.chain import check_roles
from coi.service.errors import ConfigError, Refused, VerificationError
from coi.tui.base import CoiModal, CoiScreen, serialized
from coi.tui.text import show

FORMS: dict[str, tuple[str, tuple[tuple[str, str, bool], ...]]] = {
    # kind: (title, ((name, placeholder, secret), ...)); the admin's password always last
    "enrol": ("Enrol a user", (("user", "user id (lowercase, e.g. sam)", False),
                               ("name", "printed name, as shown beside signatures", False),
                               ("roles", "roles, comma-separated (e.g. qa, auditor)", False),
                               ("new_password", "initial password for the user", True))),
    "revoke": ("Revoke a user's key", (("user", "user id", False),
                                      ("reason", "reason", False))),
    "reset": ("Reset a user's key", (("user", "user id", False),
                                    ("new_password", "new password for the user", True),
                                    ("reason", "reason", False))),
    "unlock": ("Unlock an account", (("user", "user id", False),
                                    ("reason", "reason", False))),
    "erase": ("Erase a patient's identifiers (destroys their key; cannot be undone)",
              (("coi", "the patient's CoI identifier", False),
               ("reason", "reason: the request's reference, never the patient's data", False),
               ("witness", "witness user id", False),
               ("witness_password", "witness password", True))),
}


class AdminForm(CoiModal):
    """A small form; dismisses with the values (and the admin's password) or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, kind: str, user: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.user = user

    def compose(self) -> ComposeResult:
        title, fields = FORMS[self.kind]
        with Vertical(id="admin-form"):
            yield Label(Text(title, style="bold"))
            for name, placeholder, secret in fields:
                yield Input(placeholder=placeholder, password=secret, id=f"af-{name}",
                            value=self.user if name == "user" else "")
            yield Input(placeholder="your (administrator's) password: signs this",
                        password=True, id="af-password")
            with Horizontal():
                yield Button("Sign", id="af-ok", variant="primary")
                yield Button("Cancel", id="af-cancel")

    def on_mount(self) -> None:
        self.query("#admin-form Input").first().focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "af-password":
            self.submit()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "af-ok":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        values = {i.id.removeprefix("af-"): i.value for i in self.query(Input).results(Input)
                  if i.id}
        self.dismiss(values)


class AdminScreen(CoiScreen):
    """The users table and the four actions (e, k, r, u); x erases a patient's identifiers."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("e", "form('enrol')", "Enrol"),
        Binding("k", "form('reset')", "Reset key"),
        Binding("r", "form('revoke')", "Revoke"),
        Binding("u", "form('unlock')", "Unlock"),
        Binding("x", "form('erase')", "Erase PHI"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="users", cursor_type="row", zebra_stripes=True)
        yield Static("", id="admin-result")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#users", DataTable)
        table.add_columns("User", "Printed name", "Roles", "Key", "Locked", "Failed")
        table.focus()
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="users")
    @serialized
    def load(self) -> None:
        users = self.coi_app.svc.ledger.users()
        self.app.call_from_thread(self.show_users, users)

    def show_users(self, users: list[dict[str, Any]]) -> None:
        table = self.query_one("#users", DataTable)
        table.clear()
        for u in users:
            table.add_row(show(u["user"]), show(u["name"]), show(", ".join(u["roles"])),
                          Text("active", style="green") if u["active"] else
                          Text("revoked", style="red"),
                          Text("LOCKED", style="bold red") if u["locked"] else "",
                          str(u["failed_attempts"] or ""), key=u["user"])

    def selected_user(self) -> str:
        table = self.query_one("#users", DataTable)
        if table.row_count == 0:
            return ""
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return str(key or "")

    def action_form(self, kind: str) -> None:
        user = "" if kind in ("enrol", "erase") else self.selected_user()

        def done(values: dict[str, str] | None) -> None:
            if values:
                self.apply(kind, values)

        self.app.push_screen(AdminForm(kind, user), done)

    @work(thread=True, exclusive=True, exit_on_error=False, group="apply")
    @serialized
    def apply(self, kind: str, v: dict[str, str]) -> None:
        app = self.coi_app
        ledger = app.svc.ledger
        try:
            admin = app.session.sign(v.get("password", ""))
            user = v.get("user", "").strip()
            if kind == "erase":
                witness = ledger.unlock(v.get("witness", "").strip(),
                                        v.get("witness_password", ""))
                idx = app.svc.erase_patient(admin, v.get("coi", ""), v.get("reason", ""),
                                            witness=witness)
                app.call_from_thread(self.result, show(
                    f"✔ erased the patient identifiers of {v.get('coi', '').strip().upper()}: "
                    f"entry {idx}", "bold green"))
                return
            if kind == "enrol":
                roles = [r.strip() for r in v.get("roles", "").split(",") if r.strip()]
                check_roles(roles)
                e = ledger.enrol(admin, user=user, name=v.get("name", "").strip(), roles=roles,
                                 password=v.get("new_password", ""))
            elif kind == "revoke":
                e = ledger.revoke(admin, user=user, reason=v.get("reason", ""))
            elif kind == "reset":
                e = ledger.reset(admin, user=user, password=v.get("new_password", ""),
                                 reason=v.get("reason", ""))
            else:
                e = ledger.unlock_account(admin, user=user, reason=v.get("reason", ""))
        except Refused as r:
            app.call_from_thread(self.result, show("Refused: " + r.reason, "bold red"))
            return
        except (ConfigError, VerificationError) as err:  # the PHI key, or a damaged record
            app.call_from_thread(self.result, show(f"Not done: {err}", "bold red"))
            return
        app.call_from_thread(self.result, show(f"✔ {kind} {user}: entry {e.index}",
                                               "bold green"))
        users = ledger.users()
        app.call_from_thread(self.show_users, users)

    def result(self, text: Text) -> None:
        self.query_one("#admin-result", Static).update(text)
