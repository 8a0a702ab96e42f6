"""The `taskvec patch` flow: task-vector patching (Hendel et al. 2023)."""
