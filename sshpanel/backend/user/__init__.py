"""Per-user services: a session's `UserScope` and the services that take it — containers
(`Workspace`), images, volumes, quotas, secrets, files, logs, exec, history,
the account, the disk quota and provisioning (docs/ARCHITECTURE.md "Backend services").
"""
