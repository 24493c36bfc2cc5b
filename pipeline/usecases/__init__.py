"""The use cases: what people do with a logo store, one small object each, wired by :mod:`pipeline.service`.

- :mod:`~pipeline.usecases.search`: name the logos of a photo, of crops, of a vector, of a stored logo.
- :mod:`~pipeline.usecases.ingest`: add logos (crops, a photo's boxes, auto-annotated photos).
- :mod:`~pipeline.usecases.labels`: set, clear, undo and read labels; per-label thresholds; history.
- :mod:`~pipeline.usecases.review`: the review queue of machine proposals and its verdicts.
- :mod:`~pipeline.usecases.maintenance`: index rebuilds, compaction, re-embedding.
- :mod:`~pipeline.usecases.ann`: robotoff-ann compatibility (client ids, named indexes, adds from URLs).
- :mod:`~pipeline.usecases.calibration`: the confidence calibration, fitted in the background.
- :mod:`~pipeline.usecases.insight`: what the pages read (counts, the map, cluster health, evaluation, exports).

They share one :class:`~pipeline.usecases.parts.Parts` (store, index, map, models) and tell each other about
changes through its signals; nothing outside them touches the parts.
"""
