"""Provides `admin_area`, the entry to the admin screens: users, all
containers, the host and the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sshpanel.tui.screens.admin_audit import AuditLogScreen
from sshpanel.tui.screens.admin_base import AdminSectionScreen
from sshpanel.tui.screens.admin_containers import AdminContainersScreen
from sshpanel.tui.screens.admin_host import HostScreen
from sshpanel.tui.screens.admin_users import AdminUsersScreen

if TYPE_CHECKING:
    from sshpanel.backend.admin.admin import Admin

SECTIONS: tuple[type[AdminSectionScreen], ...] = (AdminUsersScreen, AdminContainersScreen, HostScreen, AuditLogScreen)
"""The sections, in the order of their keys (1-4)."""


def admin_area(admin: Admin) -> AdminSectionScreen:
    """Returns the first section of the admin area (users).

    The caller must hold an `Admin`, which exists only for admins; the
    service checks again on every call.

    Args:
        admin: The admin service of the session.
    """
    return SECTIONS[0](admin, SECTIONS)
