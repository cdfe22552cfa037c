"""Command-line experiment modules (absl flags → config → one library call)."""
