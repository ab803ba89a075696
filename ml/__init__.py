"""User code of the example system, named by ``_target_`` in configs/."""
