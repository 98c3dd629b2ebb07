"""A run: its configuration, state (and its atomic storage), store, layout and names, and `Run` itself."""
