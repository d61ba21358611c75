"""Provides `AdminUsersScreen`, the admin's user list with create, disable,
enable, delete, role, quotas and keys."""

from __future__ import annotations

import functools
from typing import Any, Callable

from textual.app import ComposeResult
from textual.binding import Binding

from sshpanel.backend.records import UserView
from sshpanel.tui.screens.admin_base import AdminSectionScreen
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.screens.keys import UserKeysModal
from sshpanel.tui.screens.user_forms import NewUserModal, QuotaModal
from sshpanel.tui.widgets.admin_tables import UserTable

REFRESH_INTERVAL = 5.0
"""Seconds between refreshes of the list (running counts change on their own)."""


class AdminUsersScreen(AdminSectionScreen):
    """Every user; actions act on the selected one, destructive ones ask first."""

    LABEL = "Users"

    BINDINGS = [
        Binding("n", "new_user", "New"),
        Binding("k", "user_keys", "Keys"),
        Binding("e", "edit_quota", "Quotas"),
        Binding("r", "toggle_role", "Role"),
        Binding("x", "toggle_disabled", "Disable"),
        Binding("d", "delete_user", "Delete"),
    ]

    def compose_section(self) -> ComposeResult:
        """The user table."""
        yield UserTable(id="user-table")

    def on_mount(self) -> None:
        """Loads the list and keeps it fresh while the screen exists."""
        super().on_mount()
        self.set_interval(REFRESH_INTERVAL, self.refresh_users)
        self.refresh_users()

    @property
    def table(self) -> UserTable:
        """The user table."""
        return self.query_one(UserTable)

    def refresh_users(self) -> None:
        """Reloads the user list (a reload still running is superseded)."""
        self.call_backend(self.admin.users, self._show_users, failed=self.load_failed, group="users", exclusive=True)

    def _show_users(self, users: list[UserView]) -> None:
        self.load_succeeded()
        self.table.show(users)

    def _selected(self) -> UserView | None:
        user = self.table.selected
        if user is None:
            self.notify("No user selected.", severity="warning")
        return user

    def _act(self, call: Callable[[], Any], done: str) -> None:
        """Runs one admin call; says `done` and reloads the list when it worked."""
        self.call_backend(call, lambda _result: self._done(done))

    def _done(self, message: str) -> None:
        self.notify(message, markup=False)
        self.refresh_users()

    # Actions --------------------------------------------------------------

    def action_new_user(self) -> None:
        """Opens the new user form (it creates the user itself)."""
        self.app.push_screen(NewUserModal(self.admin.add_user), callback=self._user_added)

    def _user_added(self, user: UserView | None) -> None:
        if user is not None:
            self._done(f"Added {user.role} {user.name} with {user.keys} key(s)")

    def action_user_keys(self) -> None:
        """Opens the keys of the selected user."""
        if user := self._selected():
            modal = UserKeysModal(
                f"Keys of {user.name}",
                functools.partial(self.admin.keys, user.name),
                functools.partial(self.admin.add_key, user.name),
                functools.partial(self.admin.remove_key, user.name),
            )
            self.app.push_screen(modal, callback=lambda _closed: self.refresh_users())

    def action_edit_quota(self) -> None:
        """Opens the quota form of the selected user (it saves them itself)."""
        if user := self._selected():
            modal = QuotaModal(user.name, user.quota, functools.partial(self.admin.set_quota, user.name))
            self.app.push_screen(modal, callback=functools.partial(self._quota_saved, user.name))

    def _quota_saved(self, name: str, quota: Any) -> None:
        if quota is not None:
            self._done(f"Saved the quotas of {name}")

    def action_toggle_role(self) -> None:
        """Asks, then makes the selected user an admin, or an admin a user."""
        if user := self._selected():
            role = "user" if user.role == "admin" else "admin"
            question = (
                f"Make {user.name} an admin? They get these screens at their next login."
                if role == "admin"
                else f"Make {user.name} a plain user? They lose admin rights at once."
            )
            call = functools.partial(self.admin.set_role, user.name, role)
            self._confirm(question, "Change role", call, f"{user.name} is now {role}")

    def action_toggle_disabled(self) -> None:
        """Disables the selected user (after asking) or enables them."""
        user = self._selected()
        if user is None:
            return
        if user.disabled:
            self._act(functools.partial(self.admin.set_disabled, user.name, False), f"Enabled {user.name}")
            return
        question = (
            f"Disable {user.name}? Their logins are refused and their open sessions closed; "
            "their containers keep running."
        )
        call = functools.partial(self.admin.set_disabled, user.name, True)
        self._confirm(question, "Disable", call, f"Disabled {user.name}")

    def action_delete_user(self) -> None:
        """Asks, then deletes the selected user (and their containers)."""
        user = self._selected()
        if user is None:
            return
        owned = user.quota.containers
        question = f"Delete user {user.name} and their keys?"
        if owned:
            question += f" Their {owned} container(s) will be removed too, running or not."
        call = functools.partial(self.admin.remove_user, user.name, force=bool(owned))
        self._confirm(question, "Delete", call, f"Deleted {user.name}")

    def _confirm(self, question: str, label: str, call: Callable[[], Any], done: str) -> None:
        """Runs `call` only after the admin confirmed."""

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._act(call, done)

        self.app.push_screen(ConfirmModal(question, label), callback=answered)
