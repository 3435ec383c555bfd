"""Where the current state is read and actions are applied."""
