"""Verification: the checks of docs/verification.md, shared by `okai verify` and the page."""
