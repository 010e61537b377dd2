"""optout workflow of the governance room."""
