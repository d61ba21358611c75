"""The admin's side: the `Admin` service (the user services built for any
owner, gated on the admin role), accounts and keys, password hashing, the
host overview (docs/ARCHITECTURE.md "Backend services").
"""
