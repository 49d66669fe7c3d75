"""The forge: a local GitHub stand-in for demos and tests (REST subset, git smart HTTP, signed webhooks).

Start with `forge.server.create_forge_app` / `forge.server.serve_in_thread`, or `python -m forge`.
It imports nothing from the rest of Clarity.
"""
