"""Talking to a ComfyUI: the HTTP + WebSocket client, typed events, running a prompt, timings and
diagnostics from its events, starting local servers (launched or embedded) and a session's pool
of them, resource sampling, the server's own web frontend. Knows nothing of comparison, reports
or pytest."""
