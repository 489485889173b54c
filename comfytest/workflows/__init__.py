"""Workflows as values: API-format workflows and their patches, the UI format and its conversion,
V3 dynamic inputs, preflight against a server's ``/object_info``, the settings file beside a
workflow (cases, matrices), model-aware ordering. Knows nothing of reports or pytest."""
