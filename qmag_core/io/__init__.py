"""File formats: embeddings, pairs, score tables.  ``qmag_core.data`` re-exports all of it."""
