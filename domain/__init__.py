"""Pure, stdlib-only types and rules shared by every process; safe to import inside workflows."""
