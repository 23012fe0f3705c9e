"""The two EMS objectives against numbers worked out by hand from their formulas, on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from emsearch.train.losses import bag_of_tokens, batch_vocabulary, contrastive_loss, xtr_loss
from emsearch.tokenizer import EOS_ID, PAD_ID

# Token ids 4 and 5 are ordinary pieces (0 = pad, 3 = EOS); the vocabulary has 6 entries, all scored here.
V = 6
ALL = torch.arange(V)


def test_bag_of_tokens_counts_repeats_and_ignores_pad_and_eos():
    ids = torch.tensor([[5, 4, 5, EOS_ID, PAD_ID], [4, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    q = bag_of_tokens(ids, ALL)
    expected = torch.tensor([[0, 0, 0, 0, 1 / 3, 2 / 3], [0, 0, 0, 0, 1, 0]])
    torch.testing.assert_close(q, expected)


def test_bag_of_tokens_of_a_sentence_with_only_eos_is_all_zero():
    q = bag_of_tokens(torch.tensor([[EOS_ID, PAD_ID]]), ALL)
    assert q.sum().item() == 0.0


def test_xtr_loss_matches_hand_computed_kl():
    # Row 0: softmax(log w) = w / sum(w) with w = (1,1,1,1,2,2) → p(4) = p(5) = 1/4. Target tokens 4, 5 (EOS
    #        ignored) → q(4) = q(5) = 1/2. KL = 2 · 1/2 · log((1/2) / (1/4)) = log 2.
    # Row 1: w = (1,1,1,1,1,3) → p(4) = 1/8. Target token 4 twice → q(4) = 1. KL = log(1 / (1/8)) = 3 log 2.
    # Mean over the batch: 2 log 2.
    logits = torch.log(torch.tensor([[1.0, 1, 1, 1, 2, 2], [1.0, 1, 1, 1, 1, 3]]))
    target = torch.tensor([[4, 5, EOS_ID], [4, 4, EOS_ID]])
    assert xtr_loss(logits, target, ALL).item() == pytest.approx(2 * math.log(2), abs=1e-6)


def test_xtr_loss_is_zero_when_the_prediction_is_the_target():
    # p = (0,...,0,1/3,2/3) up to a vanishing remainder: logits log(q) with the zeros replaced by -50.
    target = torch.tensor([[4, 5, 5, EOS_ID]])
    logits = torch.tensor([[-50.0, -50, -50, -50, math.log(1 / 3), math.log(2 / 3)]])
    assert xtr_loss(logits, target, ALL).item() == pytest.approx(0.0, abs=1e-6)


def test_xtr_loss_accepts_half_precision_logits():
    logits = torch.log(torch.tensor([[1.0, 1, 1, 1, 2, 2]])).half()
    target = torch.tensor([[4, 5, EOS_ID]])
    assert xtr_loss(logits, target, ALL).item() == pytest.approx(math.log(2), abs=1e-3)


def test_contrastive_loss_matches_hand_computed_symmetric_infonce():
    # a = (e1, e2); b = (3·e1, e1 + e2) → after normalising, b = (e1, (e1 + e2)/√2). With temperature 1,
    # sim = a · bᵀ = [[1, s], [0, s]], s = 1/√2.
    # a→b rows:  -log(e^1 / (e^1 + e^s)) and -log(e^s / (e^0 + e^s)).
    # b→a rows (simᵀ = [[1, 0], [s, s]]): -log(e^1 / (e^1 + e^0)) and -log(e^s / (e^s + e^s)) = log 2.
    a = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    b = torch.tensor([[3.0, 0, 0], [1, 1, 0]])
    s = 1 / math.sqrt(2)
    a_to_b = (math.log(math.e + math.exp(s)) - 1 + math.log(1 + math.exp(s)) - s) / 2
    b_to_a = (math.log(math.e + 1) - 1 + math.log(2)) / 2
    expected = (a_to_b + b_to_a) / 2
    assert contrastive_loss(a, b, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)


def test_contrastive_loss_divides_similarities_by_the_temperature():
    # sim = [[1, 0], [0, 1]] / 0.5 = [[2, 0], [0, 2]]: every row is -log(e² / (e² + 1)) = log(1 + e⁻²).
    a = torch.tensor([[1.0, 0, 0], [0, 2, 0]])
    b = torch.tensor([[5.0, 0, 0], [0, 1, 0]])
    assert contrastive_loss(a, b, temperature=0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


def test_contrastive_margin_is_taken_off_the_true_pair_only():
    # sim = [[1, 0], [0, 1]]; margin 0.5 at temperature 0.5: logits [[1, 0], [0, 1]] → every row log(1 + e⁻¹).
    a = torch.tensor([[1.0, 0], [0, 1]])
    got = contrastive_loss(a, a.clone(), temperature=0.5, margin=0.5).item()
    assert got == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    assert got > contrastive_loss(a, a.clone(), temperature=0.5).item()


def test_contrastive_loss_leaves_duplicates_out_of_the_softmax():
    # Rows 0 and 1 share a side: each is not a negative of the other. Row 2 is orthogonal to both.
    # With temperature 1: sim = [[1, 1, 0], [1, 1, 0], [0, 0, 1]]; masking (0,1) and (1,0) leaves
    # row 0: logits (1, 0) over {0, 2} → log(1 + e⁻¹); row 1 the same; row 2: (0, 0, 1) → log(2 + e) - 1.
    a = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 0, 1]])
    b = a.clone()
    dup = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    row = (2 * math.log(1 + math.exp(-1)) + math.log(2 + math.e) - 1) / 3
    assert contrastive_loss(a, b, 1.0, dup).item() == pytest.approx(row, abs=1e-6)
    # Without the mask the duplicate counts as a negative and the loss is higher.
    assert contrastive_loss(a, b, 1.0).item() > row + 0.1


def test_contrastive_loss_gradient_ranks_each_pair_first():
    torch.manual_seed(0)
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3)
    start = contrastive_loss(a, b, 0.1).item()
    for _ in range(50):  # plain gradient descent on a
        (grad,) = torch.autograd.grad(contrastive_loss(a, b, 0.1), a)
        a = (a - 0.5 * grad).detach().requires_grad_()
    sim = torch.nn.functional.normalize(a.detach(), dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
    assert sim.argmax(1).tolist() == [0, 1, 2, 3]
    assert contrastive_loss(a, b, 0.1).item() < start / 4


def test_batch_vocabulary_is_the_sorted_distinct_ordinary_pieces():
    a = torch.tensor([[9, 4, EOS_ID, PAD_ID]])
    b = torch.tensor([[4, 7, 7, EOS_ID]])
    assert batch_vocabulary(a, b).tolist() == [4, 7, 9]


def test_xtr_loss_over_a_batch_vocabulary_is_the_kl_over_those_pieces():
    # Pieces (4, 7, 9); logits log(1, 1, 2) → p = (1/4, 1/4, 1/2). Target: 9 and 4 → q = (1/2, 0, 1/2).
    # KL = 1/2 · log(2) + 1/2 · log(1) = log(2) / 2. Scoring only these pieces leaves out the rest of V.
    pieces = torch.tensor([4, 7, 9])
    logits = torch.log(torch.tensor([[1.0, 1, 2]]))
    target = torch.tensor([[9, 4, EOS_ID, PAD_ID]])
    assert xtr_loss(logits, target, pieces).item() == pytest.approx(math.log(2) / 2, abs=1e-6)
