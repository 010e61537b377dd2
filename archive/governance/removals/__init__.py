"""removals workflow of the governance room."""
