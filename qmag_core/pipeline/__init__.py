"""Photos to scores: the vision side's steps run in order, locally or on Ray (map: docs/development.md)."""
