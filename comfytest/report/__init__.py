"""The report: one JSON document (schema ``comfytest.report/1``) and its renderings (terminal,
markdown, JUnit properties, HTML), timing and memory comparison, history and trend pages,
saved preview frames, and the ``comfytest report`` command. Knows nothing of pytest."""
