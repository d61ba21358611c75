"""Provides the domain: `Workspace` (one user's view of the engine), the engine
connection, and the Docker events listener. The only code that imports `docker`
(docs/ARCHITECTURE.md "Layers"). Every method here blocks: callers on the event
loop run them in threads."""
