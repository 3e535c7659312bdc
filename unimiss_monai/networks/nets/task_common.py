"""What the segmentation and classification networks share: encoder freezing and layer groups for LR decay."""

from __future__ import annotations

from torch import nn

__all__ = ["FineTuneMixin", "encoder_layer_groups"]


def encoder_layer_groups(model: nn.Module, prefix: str = "encoder.") -> list[list[str]]:
    """Parameter names grouped from input to output: ``[stem + stage-1 embedding, block 1, block 2, ..., rest]``.

    A stage's patch/position embedding and CLS projection join the first block of that stage; every parameter not
    in the encoder (decoder, heads) forms the last group.
    """
    names = [n for n, _ in model.named_parameters()]
    groups: list[list[str]] = [[]]
    block_index: dict[tuple[int, int], int] = {}
    for n in names:
        if n.startswith(prefix + "blocks."):
            i, j = (int(v) for v in n[len(prefix) + 7 :].split(".")[:2])
            block_index.setdefault((i, j), 0)
    for rank, key in enumerate(sorted(block_index)):
        block_index[key] = rank + 1
        groups.append([])
    first_of_stage = {i: block_index[(i, 0)] for (i, j) in block_index if j == 0}
    groups.append([])
    for n in names:
        if not n.startswith(prefix):
            groups[-1].append(n)
            continue
        rest = n[len(prefix) :].split(".")
        if rest[0] == "blocks":
            groups[block_index[(int(rest[1]), int(rest[2]))]].append(n)
        elif rest[0] in ("patch_embeds", "pos_embeds") and int(rest[1]) > 0:
            groups[first_of_stage.get(int(rest[1]), 0)].append(n)
        elif rest[0] == "cls_proj":
            groups[first_of_stage.get(int(rest[1]) + 1, 0)].append(n)
        else:
            groups[0].append(n)
    return groups


class FineTuneMixin:
    """``freeze_encoder``, ``layer_groups`` and ``no_weight_decay`` for a network holding ``self.encoder``."""

    encoder: nn.Module

    def freeze_encoder(self, freeze: bool = True) -> None:
        """Stop (``True``) or restart (``False``) training of the encoder's parameters."""
        for p in self.encoder.parameters():
            p.requires_grad_(not freeze)

    def layer_groups(self) -> list[list[str]]:
        """Parameter names from input to output, for layer-wise LR decay (see ``param_groups_lrd``)."""
        return encoder_layer_groups(self)  # type: ignore[arg-type]

    def no_weight_decay(self) -> set[str]:
        names = {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
        decoder = getattr(self, "decoder", None)
        if decoder is not None:
            names |= {f"decoder.{n}" for n in decoder.no_weight_decay()}
        return names

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for m in (self.encoder, getattr(self, "decoder", None)):
            if m is not None:
                m.set_grad_checkpointing(enable)


