"""Route optimization: the model's engines (OR-Tools, PyVRP), travel matrices and the activity."""
