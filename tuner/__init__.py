"""Hardware discovery, the memory and time probe, stage policies and the Ray Tune searches."""

__all__: list[str] = []
