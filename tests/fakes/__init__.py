"""Test-only stand-ins for remote paid services (validated against their real specs)."""
