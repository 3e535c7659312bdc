"""Networks: the UniMiSS MiT and UniMiSS+ MiT+ backbones (2D/3D switchable), decoders, heads and task networks."""
