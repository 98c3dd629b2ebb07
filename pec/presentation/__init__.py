"""What a person sees: matplotlib figures, the terminal console and the `pec` command (`cli`)."""
