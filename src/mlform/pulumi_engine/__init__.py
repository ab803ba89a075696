"""The one package that imports ``pulumi``: mlform's adapter to the Pulumi engine.

It runs inline programs through the Automation API on a ``file://`` backend inside the
stack's state directory, translates Pulumi errors and engine events into mlform's own
types (:mod:`mlform.infra.model`, :mod:`mlform.errors`), and serialises operations per
stack. Nothing outside this package imports ``pulumi`` or ``pulumi_kubernetes``.
"""
