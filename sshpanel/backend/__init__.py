"""The backend: everything the two front-ends (the dashboard and the exec
command line) ask of Docker and of the database, for one user at a time.
Every method blocks: callers on the event loop run them in threads.

Sub-packages (docs/ARCHITECTURE.md "Backend services", "The engine seam"):

- `engine`: the one seam to a Docker engine (`Engine`, the only code that
  imports `docker`), and the readers one engine has per process: the events
  listener and recorder, the container states kept from the events, stats
  sampling, start-up recovery.
- `user`: a session's `UserScope` and the per-user services that take it:
  containers (`Workspace`), images, volumes, quotas, secrets, files, logs,
  exec, history, the account, the disk quota, forwarding, provisioning.
- `pipeline`: image builds, their templates and pids cgroup, deployments.
- `projects`: compose projects.
- `admin`: the admin's service, accounts, passwords, the host overview.

Beside them: `views` and `records`, the plain records returned to the
front-ends.
"""
