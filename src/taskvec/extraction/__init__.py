"""The `taskvec extract` flow: prepare (no weights), run the model over every prompt, write a session."""
