"""The numbers side, part 2: how good the scores are (numpy and pandas only; map in docs/development.md)."""
