"""Edge runtime: run a deployment bundle with numpy, Pillow and ONNX Runtime or TensorRT only.

Nothing here imports torch or the training code (a test proves it in a fresh interpreter), so a
bundle runs on a device that has neither. Everything the runtime needs comes from the bundle's
``manifest.json`` (see :mod:`simmim_deploy.core.manifest`).
"""
