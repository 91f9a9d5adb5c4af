"""Contextual biasing: catalogs of phrases, context graphs for biased search, and encoder-side
contextual adapters for CTC (sltk.bias.encoder)."""
