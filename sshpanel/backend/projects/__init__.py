"""Compose projects: compose files read from the home (or stdin), the
`Projects` service (`up`, `ps`, `down`...) and its all-or-nothing `up`
(docs/ARCHITECTURE.md "Backend services").
"""
