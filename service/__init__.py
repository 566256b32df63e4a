"""The user-facing edge of stagetune: the ``stagetune`` command line.

It sits at the top of the dependency chain (service -> tuner -> model) and imports the lower
packages lazily, inside each command, so ``stagetune --help`` starts without torch.
"""

__all__: list[str] = []
