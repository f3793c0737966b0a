"""On top of the stack: the sepsis model's training (gradient-boosted trees or a torch MLP →
ONNX), validation report and subgroup gate, the registry's command line and bundled versions, and
the evaluation commands (the model, and the screening rules run through the real job)."""
