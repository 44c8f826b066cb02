"""The quality side: heads, degradations, PLQ maps, the scale and the enrolment check (map: docs/development.md)."""
