"""On-device TFLite models: runtime, features, baselines, predictors, registry and training."""
