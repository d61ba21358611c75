"""The build chain: image builds under the build limits, their pids cgroup,
Dockerfile templates, and deployments of the builds (docs/ARCHITECTURE.md
"Backend services").
"""
