"""The vision side: photos in, aligned face crops out, and the encoder interface (map: docs/development.md)."""
