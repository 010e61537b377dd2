"""sharing workflow of the governance room."""
