"""HTTP plumbing of the API: request ids, tracing and metrics middleware, pagination cursors, checks."""
