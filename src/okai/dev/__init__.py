"""The local stack: anvil, the local Walrus-compatible server and the deployed registry."""
