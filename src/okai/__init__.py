"""okai: train models on rented compute with provenance anyone can verify."""

__version__ = "0.1.0"
