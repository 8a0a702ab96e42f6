"""The `taskvec evaluate` flow: generate answers, parse and score them, write a results directory."""
