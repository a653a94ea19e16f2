"""DPO and KTO losses: against hand computations and against TRL's trainers on the same batch."""

from __future__ import annotations

import math

import pytest
import torch

from lapidar.data.tokenize import IGNORE, collate
from lapidar.training.objectives import dpo_loss, encode_answer, kto_kl, kto_loss, sequence_logps


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_dpo_loss_matches_hand_computation():
    # Two pairs: summed answer log-probs of the policy and of the reference.
    pc, pr = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -15.0])
    rc, rr = torch.tensor([-11.0, -18.0]), torch.tensor([-11.0, -16.0])
    losses, r_chosen, r_rejected = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 1: chosen log-ratio +1, rejected -1 -> margin 0.5 * 2 = 1
    # pair 2: chosen log-ratio -2, rejected +1 -> margin 0.5 * -3 = -1.5
    assert losses.tolist() == pytest.approx([-math.log(sigmoid(1.0)), -math.log(sigmoid(-1.5))], abs=1e-6)
    assert r_chosen.tolist() == pytest.approx([0.5, -1.0]) and r_rejected.tolist() == pytest.approx([-0.5, 0.5])


def test_dpo_loss_is_ln2_when_policy_is_reference_and_pushes_chosen_up():
    logp = torch.tensor([-7.0, -9.0], requires_grad=True)
    losses, *_ = dpo_loss(logp[:1], logp[1:], torch.tensor([-7.0]), torch.tensor([-9.0]), beta=0.1)
    assert losses.item() == pytest.approx(math.log(2))
    losses.sum().backward()
    assert logp.grad is not None
    # Gradient descent raises the chosen log-prob and lowers the rejected one, by beta * sigma(0) = 0.05 each.
    assert logp.grad.tolist() == pytest.approx([-0.05, 0.05])


def test_kto_loss_matches_hand_computation():
    policy = torch.tensor([-5.0, -6.0, -8.0])
    ref = torch.tensor([-6.0, -6.5, -7.0])  # log-ratios +1, +0.5, -1
    good = torch.tensor([True, False, False])
    kl = torch.tensor(0.2)
    losses, rewards = kto_loss(policy, ref, good, kl, beta=2.0, desirable_weight=1.5, undesirable_weight=0.5)
    expected = [
        1.5 * (1 - sigmoid(2.0 * (1.0 - 0.2))),  # 👍: pulled up relative to the reference point
        0.5 * (1 - sigmoid(2.0 * (0.2 - 0.5))),  # 👎 above the reference point: costly
        0.5 * (1 - sigmoid(2.0 * (0.2 + 1.0))),  # 👎 well below it: cheap
    ]
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)
    assert rewards.tolist() == pytest.approx([2.0, 1.0, -2.0])


def test_kto_reference_point_is_clamped_and_detached():
    policy = torch.tensor([-3.0, -4.0], requires_grad=True)
    assert kto_kl(policy, torch.tensor([-2.0, -2.0])).item() == 0.0  # mean log-ratio -1.5 -> clamped to 0
    kl = kto_kl(policy, torch.tensor([-4.0, -4.5]))  # mean of +1 and +0.5
    assert kl.item() == pytest.approx(0.75) and not kl.requires_grad


def test_encode_answer_labels_only_the_rated_answer(tokenizer):
    prompt = [
        {"role": "user", "content": "A?"},
        {"role": "assistant", "content": "One."},
        {"role": "user", "content": "B?"},
    ]
    enc = encode_answer(tokenizer, prompt, [{"role": "assistant", "content": "Two."}], 512)
    trained = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE]
    assert tokenizer.decode(trained) == "Two.<|im_end|>"


@pytest.fixture(scope="module")
def policy_and_ref(tiny_source):
    """tiny-qwen2.5 (the reference) and a copy with perturbed attention weights (the policy)."""
    import copy

    from lapidar.models.loading import load_model

    ref = load_model(tiny_source).eval()
    policy = copy.deepcopy(ref)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if name.endswith(("q_proj.weight", "v_proj.weight")):
                p.add_(0.05 * torch.randn_like(p))
    return policy, ref


def _answers(tokenizer, rows):
    return [encode_answer(tokenizer, [{"role": "user", "content": q}], [{"role": "assistant", "content": a}], 128)
            for q, a in rows]  # fmt: skip


ROWS = [("Say hi", "Sure! Hi."), ("Count to three", "one two three"), ("Say hi", "lol no"), ("Count", "nah")]


def test_sequence_logps_matches_full_log_softmax(tokenizer, policy_and_ref):
    policy, _ = policy_and_ref
    batch = collate(_answers(tokenizer, ROWS), tokenizer.pad_token_id)
    with torch.no_grad():
        ours = sequence_logps(policy, batch)
        logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert ours.tolist() == pytest.approx((picked * keep).sum(-1).tolist(), abs=1e-4)


def _trl_args(config_cls, tmp_path, **kw):
    return config_cls(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", per_device_train_batch_size=2, **kw
    )


def _our_logps(policy, ref, batch):
    with torch.no_grad():
        return sequence_logps(policy, batch), sequence_logps(ref, batch)


def test_dpo_loss_matches_trl_dpo_trainer(tokenizer, policy_and_ref, tmp_path):
    """The same batch through TRL's DPOTrainer._compute_loss (with a separate reference model) gives the same loss."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    policy, ref_model = policy_and_ref
    pairs = [{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
              "rejected": [{"role": "assistant", "content": "b"}]}] * 2  # fmt: skip
    trainer = DPOTrainer(
        model=policy,
        ref_model=ref_model,
        args=_trl_args(DPOConfig, tmp_path, beta=0.3),
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
    )
    policy.eval()
    batch = collate(_answers(tokenizer, ROWS), tokenizer.pad_token_id)  # rows 0,1 chosen; 2,3 rejected
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "completion_mask": (batch["labels"] != IGNORE).long(),
    }
    with torch.no_grad():
        trl_loss = trainer._compute_loss(policy, inputs, return_outputs=False)
    pol, ref = _our_logps(policy, ref_model, batch)
    ours, *_ = dpo_loss(pol[:2], pol[2:], ref[:2], ref[2:], beta=0.3)
    assert abs(ours.mean().item() - math.log(2)) > 1e-3  # the policy really differs from the reference
    assert ours.mean().item() == pytest.approx(trl_loss.item(), abs=1e-5)


def test_kto_loss_matches_trl_kto_trainer(tokenizer, policy_and_ref, tmp_path):
    """TRL's KTOTrainer._compute_loss on the same rows and the same mismatched (KL) rows gives the same loss."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    policy, ref_model = policy_and_ref
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "a"}],
             "label": i % 2 == 0} for i in range(4)]  # fmt: skip
    trainer = KTOTrainer(
        model=policy,
        ref_model=ref_model,
        args=_trl_args(KTOConfig, tmp_path, beta=0.5, desirable_weight=1.2, undesirable_weight=0.8),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    policy.eval()
    prompts = [q for q, _ in ROWS]
    answers = [a for _, a in ROWS]
    good = torch.tensor([True, True, False, False])
    # Mismatched pairs as in TRL: prompt i with the completion of row i-1.
    mism = [
        encode_answer(tokenizer, [{"role": "user", "content": prompts[i]}], [{"role": "assistant", "content": a}], 128)
        for i, a in enumerate(answers[-1:] + answers[:-1])
    ]
    batch, kl_batch = collate(_answers(tokenizer, ROWS), tokenizer.pad_token_id), collate(mism, tokenizer.pad_token_id)
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "completion_mask": (batch["labels"] != IGNORE).long(),
        "KL_input_ids": kl_batch["input_ids"],
        "KL_attention_mask": kl_batch["attention_mask"],
        "KL_completion_mask": (kl_batch["labels"] != IGNORE).long(),
        "label": good,
    }
    with torch.no_grad():
        trl_loss = trainer._compute_loss(policy, inputs, return_outputs=False)
    pol, ref = _our_logps(policy, ref_model, batch)
    kl = kto_kl(*_our_logps(policy, ref_model, kl_batch))
    ours, _ = kto_loss(pol, ref, good, kl, 0.5, 1.2, 0.8)
    assert kl.item() > 0  # the KL term really takes part
    assert ours.mean().item() == pytest.approx(trl_loss.item(), abs=1e-5)
