"""Ready-made PyTorch modules for ``framework: torch`` models (``mlform.torch.mlp.MLP``).

A model's ``module`` may name any ``torch.nn.Module`` whose constructor takes
``in_features`` and ``out_features``; the trainer passes both.
"""
