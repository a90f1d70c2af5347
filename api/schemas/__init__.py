"""Request and response bodies. Inputs forbid unknown fields (no mass assignment)."""
