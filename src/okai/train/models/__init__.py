"""Built-in models; each module exposes `train(ctx) -> torch.nn.Module` (see okai.train.builtins)."""
