"""The operator's view (issue 13): a local status page with live charts, Prometheus metrics
at /metrics, and alerts through apprise. `view.Operator` is what the supervisor builds and
calls; `web`, `metrics` and `alerts` are its outlets, `credentials` reads their secrets.

What this package must never do: change trading state other than by the halt command
(`Supervisor.handle_command`), block the event loop, or be imported by a lower layer.
"""
