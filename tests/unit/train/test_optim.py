"""Optimiser groups and LR schedules against the official SimMIM formulas, written out here."""

from __future__ import annotations

import math

import pytest
import timm
from torch import nn

from simmim_deploy import build_simmim
from simmim_deploy.train.lr_rule import cap_warmup, lr_scale
from simmim_deploy.train.optim import build_optimizer, param_groups
from simmim_deploy.train.schedule import build_scheduler, lr_at

DECAY = 0.75


# --- independent references (official microsoft/SimMIM optimizer.py, on official names) ---
def official_vit_layer(name: str, depth: int) -> int:
    if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks"):
        return int(name.split(".")[1]) + 1
    return depth + 1


def official_swin_layer(name: str, depths: list[int]) -> int:
    if name == "mask_token" or name.startswith("patch_embed"):
        return 0
    if name.startswith("layers"):
        stage, part = int(name.split(".")[1]), name.split(".")[3]
        if part in ("reduction", "norm"):
            return sum(depths[: stage + 1])
        return sum(depths[:stage]) + int(part) + 1
    return sum(depths) + 1


def timm_swin_to_official(name: str) -> str:
    parts = name.split(".")
    if name.startswith("layers.") and parts[2] == "downsample":
        return ".".join(["layers", str(int(parts[1]) - 1), "downsample", *parts[3:]])
    return name  # blocks, norm, head: same names


def _scales(model: nn.Module, layer_decay=DECAY) -> dict[str, tuple[float, float]]:
    ids = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for g in param_groups(model, 0.05, layer_decay=layer_decay):
        for p in g["params"]:
            out[ids[id(p)]] = (g["lr_scale"], g["weight_decay"])
    return out


class Classifier(nn.Module):
    """A task model holding the encoder under a prefix, like the fine-tuning wrappers."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.backbone = timm.create_model(name, pretrained=False, num_classes=0)
        self.head = nn.Linear(self.backbone.num_features, 10)


def test_layer_scales_vit_match_official():
    model = timm.create_model("vit_micro_patch8_64", pretrained=False, num_classes=0)
    depth = len(model.blocks)
    scales = _scales(model)
    assert len(scales) == len(list(model.parameters()))
    for name, (scale, _) in scales.items():
        want = DECAY ** (depth + 1 - official_vit_layer(name, depth))
        assert scale == pytest.approx(want), name
    assert scales["patch_embed.proj.weight"][0] == pytest.approx(DECAY ** (depth + 1))
    assert scales["norm.weight"][0] == 1.0


def test_layer_scales_swin_match_official_through_a_prefix():
    model = Classifier("swin_nano_patch4_window4_64")
    depths = [len(s.blocks) for s in model.backbone.layers]
    scales = _scales(model)
    for name, (scale, _) in scales.items():
        if name.startswith("head."):
            assert scale == 1.0  # task head: top layer
            continue
        official = timm_swin_to_official(name[len("backbone.") :])
        want = DECAY ** (sum(depths) + 1 - official_swin_layer(official, depths))
        assert scale == pytest.approx(want), name
    # the patch merging that opens timm stage 1 is the end of official stage 0: id 1
    assert scales["backbone.layers.1.downsample.reduction.weight"][0] == pytest.approx(DECAY**4)


def test_no_decay_groups_simmim():
    model = build_simmim("swin_nano_patch4_window4_64")
    scales = _scales(model, layer_decay=None)
    no_decay = {n for n, (_, wd) in scales.items() if wd == 0.0}
    decay = set(scales) - no_decay
    for name, p in model.named_parameters():
        if p.ndim <= 1 or name.endswith(".bias") or "relative_position_bias_table" in name:
            assert name in no_decay, name
    assert "mask_token" in no_decay
    assert "encoder.patch_embed.proj.weight" in decay
    assert "encoder.layers.0.blocks.0.attn.qkv.weight" in decay
    assert "decoder.0.weight" in decay
    assert all(s == 1.0 for s, _ in scales.values())


def test_no_decay_groups_vit_tokens_and_pos_embed():
    model = build_simmim("vit_nano_patch8_32")
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {
        names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]
    }
    assert {"encoder.pos_embed", "encoder.cls_token", "mask_token"} <= no_decay
    assert "encoder.blocks.0.mlp.fc1.weight" not in no_decay
    assert all(g["lr"] == pytest.approx(1e-3 * g["lr_scale"]) for g in opt.param_groups)
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8


def test_linear_rule_per_512_is_the_official_scaling():
    assert lr_scale("linear", 128, world=16).factor * 2e-4 == pytest.approx(8e-4)
    assert lr_scale("linear", 32, world=2, accumulation=4).factor * 1.25e-3 == pytest.approx(
        6.25e-4
    )
    assert lr_scale("linear", 8).factor * 2e-4 == pytest.approx(2e-4 * 8 / 512)


@pytest.mark.parametrize(
    ("batch", "auto", "sqrt"),
    [(1, 1.0, (1 / 512) ** 0.5), (8, 1.0, 0.125), (512, 1.0, 1.0), (4096, 8.0, 8**0.5)],
)
def test_lr_rule_from_batch_1_to_4096(batch: int, auto: float, sqrt: float):
    # auto: exactly linear from 512 up (official recipes unchanged), the per-512 value as a
    # floor below (batch 8: 1.25e-3, where linear gives 1.95e-5 and starves training)
    rule = lr_scale("auto", batch)
    assert rule.factor == pytest.approx(auto)
    assert rule.rule == ("linear" if batch >= 512 else "floor")
    assert lr_scale("linear", batch).factor == pytest.approx(batch / 512)
    assert lr_scale("sqrt", batch).factor == pytest.approx(sqrt)
    assert lr_scale("none", batch).factor == 1.0
    # the effective batch counts processes and accumulation: 8 x 64 x 8 = 4096
    assert lr_scale("auto", 8, world=64, accumulation=8).factor == pytest.approx(8.0)
    assert rule.explain(1.25e-3, batch, 1, 1).startswith(f"lr {1.25e-3 * auto:.3g} = 0.00125")


def test_lr_rule_explains_itself_and_refuses_unknown_rules():
    line = lr_scale("auto", 32).explain(1.25e-3, 32, 1, 1)
    assert line.startswith("lr 0.00125 = 0.00125 per 512 images, floor rule below 512")
    assert "effective batch 32 = 32 x 1 process(es) x 1 accumulation (lr-scaling auto)" in line
    with pytest.raises(ValueError, match="lr_scaling"):
        lr_scale("cubic", 32)


def test_warmup_is_capped_to_a_fifth_of_the_run():
    assert cap_warmup(20.0, 100) == (20.0, None)  # official recipe: untouched
    used, note = cap_warmup(1.0, 1)  # a 1-epoch run trains for 80% of its steps
    assert used == pytest.approx(0.2) and note is not None and "capped" in note


def _ref_cosine(t, base, total, warm, wlr, mlr):
    if t < warm:
        return wlr + (base - wlr) * t / warm
    return mlr + (base - mlr) * (1 + math.cos(math.pi * min(t, total) / total)) / 2


def test_cosine_values_at_warmup_end_middle_end():
    kw = dict(base_lr=1e-3, total_steps=1000, warmup_steps=100, warmup_lr=1e-6, min_lr=1e-5)
    assert lr_at(0, **kw) == pytest.approx(1e-6)
    assert lr_at(50, **kw) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    for t in (100, 500, 999, 1000, 1200):
        assert lr_at(t, **kw) == pytest.approx(_ref_cosine(t, 1e-3, 1000, 100, 1e-6, 1e-5))
    assert lr_at(500, **kw) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(1000, **kw) == pytest.approx(1e-5)


def test_step_schedule():
    kw = dict(base_lr=1.0, total_steps=800, warmup_steps=10, kind="step", milestones=(700,))
    assert lr_at(5, **kw) == pytest.approx(0.5)
    assert lr_at(699, **kw) == pytest.approx(1.0)
    assert lr_at(700, **kw) == pytest.approx(0.1)
    two = dict(kw, milestones=(300, 600), gamma=0.5)
    assert [lr_at(t, **two) for t in (299, 300, 600)] == pytest.approx([1.0, 0.5, 0.25])


def _run(model, steps, state=None):
    opt = build_optimizer(model, lr=1e-3, layer_decay=0.8)
    sched = build_scheduler(opt, total_steps=50, warmup_steps=5, warmup_lr=1e-6, min_lr=1e-5)
    if state is not None:
        opt.load_state_dict(state[0])
        sched.load_state_dict(state[1])
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    return opt, sched, lrs


def test_scheduler_honours_lr_scale_and_resumes():
    model = timm.create_model("vit_nano_patch8_32", pretrained=False, num_classes=0)
    opt, _, lrs = _run(model, 30)
    for g, lr in zip(opt.param_groups, lrs[-1], strict=True):
        want = g["lr_scale"] * _ref_cosine(30, 1e-3, 50, 5, 1e-6, 1e-5)
        assert lr == pytest.approx(want)
    opt, sched, first = _run(model, 12)
    state = (opt.state_dict(), sched.state_dict())
    _, _, rest = _run(model, 18, state=state)
    flat = [lr for step in lrs for lr in step]
    assert [lr for step in first + rest for lr in step] == pytest.approx(flat, rel=1e-12)
