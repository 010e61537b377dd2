"""closure workflow of the governance room."""
