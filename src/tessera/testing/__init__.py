"""Test-only helpers: misbehaving participants and the like. Production code never imports this."""
