"""The Textual admin TUI; it talks to sidecars only over the admin HTTP API."""
