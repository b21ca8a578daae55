"""Data on Walrus: the HTTP client, datasets as verified shards, the local server."""
