"""Activities: every side effect. Those that need stores are methods of classes built once per worker."""
