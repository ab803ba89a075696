"""Safe rollouts of a deployment on the local target.

- :mod:`~mlform.rollout.strategy`: a deployment's ``strategy`` block as steps (pure);
- :mod:`~mlform.rollout.analysis`: the version servers' Prometheus metrics as the
  analysis values (success rate, latency quantiles, ...) and their verdict;
- :mod:`~mlform.rollout.journal`: the record of every rollout step, under the state
  directory, so an interrupted rollout resumes where it stopped;
- :mod:`~mlform.rollout.controller`: walks the steps, moving router weights and
  starting/stopping version servers through callbacks.
"""
