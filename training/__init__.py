"""Sepsis risk model training (torch → ONNX), validation and model cards: not built yet."""
