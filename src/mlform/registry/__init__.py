"""The model registry: content-addressed artifacts, numbered versions with aliases,
model cards, reference statistics, training-run records and lineage records.

The modules are small and import-light; import what you need from them directly::

    from mlform.registry.artifacts import ArtifactStore
    from mlform.registry.versions import ModelRegistry, ModelVersion
    from mlform.registry.runs import RunRecord, RunStore
    from mlform.registry.lineage import DatasetInput, lineage_event
    from mlform.registry.card import CardInputs, render_card
    from mlform.registry.reference import reference_stats
    from mlform.registry.queries import list_models, show_model  # the CLI's read side
"""
