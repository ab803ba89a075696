"""Infrastructure: the long-lived resources an mlform object owns on its target.

Pure data (no Pulumi import). Providers describe what an object needs as
:class:`~mlform.infra.model.Process` (local target) or
:class:`~mlform.infra.model.Manifest` (Kubernetes objects, for the ``kubernetes`` and
``render`` targets); :mod:`mlform.pulumi_engine` turns a set of them into one Pulumi
program per stack and runs it.
"""
