"""AutoML: candidate model families and the Optuna search over them."""
