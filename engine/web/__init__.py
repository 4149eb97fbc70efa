"""The web console (`synesthesia run --web PORT`): live status, preview, controls, presets and bundle swap
in a browser. aiohttp is imported by engine/web/server.py only when the console starts (extra `web`)."""
