"""Training: turning a feature set and a model spec into a trained, evaluated candidate.

:mod:`mlform.training.types` holds the values that pass between the data loader, the
trainers (scikit-learn, PyTorch), evaluation and the registry.
"""
