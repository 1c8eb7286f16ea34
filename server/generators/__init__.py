"""Pure generators: prompts for the model, parsers of its text, the offline composition."""
