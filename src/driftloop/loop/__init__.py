"""The closed loop: triggers, retraining, canary rollout."""
