"""benchmarks/letter_binding.py: the accuracy columns and the paired interval, by hand."""

from __future__ import annotations

import numpy as np

from helpers import load_benchmark
from ulmrec.tasks.builders import lookup_sample


def _samples(targets):
    return [lookup_sample(u, list(range(100, 104)), ["a", "b", "c", "d"], int(t)) for u, t in enumerate(targets)]


def test_measure_by_hand():
    mod = load_benchmark("letter_binding")
    targets = [0, 1, 2, 3]
    scores = np.array([[5, 1, 0, 0],    # right (answer A)
                       [5, 1, 0, 0],    # wrong: says A, right letter 2nd
                       [0, 0, 9, 1],    # right
                       [0, 0, 9, 1]],   # wrong: right letter 2nd
                      dtype=float)
    m = mod.measure(scores, _samples(targets))
    assert m["accuracy"] == 0.5 and m["correct"] == [1, 0, 1, 0]
    assert m["mrr"] == (1 + 0.5 + 1 + 0.5) / 4
    assert m["accuracy_answer_A"] == 1.0 and m["accuracy_answer_not_A"] == 1 / 3
    assert m["predicted_A"] == 0.5


def test_paired_accuracy_interval():
    mod = load_benchmark("letter_binding")
    same = mod.paired_accuracy([1, 0, 1, 0] * 50, [1, 0, 1, 0] * 50)
    assert same == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    better = mod.paired_accuracy([1] * 150 + [0] * 50, [0] * 150 + [0] * 50)
    assert better["mean"] == 0.75 and 0.6 < better["lo"] < 0.75 < better["hi"] < 0.85


def test_induction_text():
    mod = load_benchmark("letter_binding")
    names = ["Red lipstick", "Blue shampoo", "Green soap"]
    assert mod.induction_text(names, 1, "letter_last") == "Red lipstick (A)\nBlue shampoo (B)\nGreen soap (C)\nBlue shampoo ("
    assert mod.induction_text(names, 2, "letter_first") == "(A) Red lipstick\n(B) Blue shampoo\n(C) Green soap\nGreen soap ("


def test_lora_layout():
    from ulmrec.ranker.config import RankerConfig

    mod = load_benchmark("letter_binding")
    assert mod.lora_layout(RankerConfig(lora_layers=8)) == "r 8, q/v, top 8 layers"
    seven = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert mod.lora_layout(RankerConfig(lora_layers=0, lora_targets=seven, lora_r=16)) == "r 16, all 7 maps, all layers"
