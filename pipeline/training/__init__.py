"""Training recipes and the data they learn from: never imported by the runtime.

- :mod:`pipeline.training.synth`: simple-icons (and other npm icon sets) rendered
  and "photographed"; the one train/val/test split of simple-icons.
- :mod:`pipeline.training.scenes`: product-packaging photos with logos at known boxes.
- :mod:`pipeline.training.detector`: the bundled detector's recipe and ONNX export.
- :mod:`pipeline.training.embedder`: the bundled embedder's recipe.
- :mod:`pipeline.training.metrics`: retrieval figures shared by training and benchmarks.

The server loads only what these recipes produce (``assets/detector``,
``assets/embedder``); ``tests/unit/test_layout.py`` checks that no runtime module
imports this package.
"""
