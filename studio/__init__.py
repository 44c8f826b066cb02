"""Dashboard support outside the core: datasets, session state, sidebar, figures (map: docs/development.md)."""
