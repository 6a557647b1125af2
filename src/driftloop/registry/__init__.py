"""The promotion gate and the deployment state machine."""
