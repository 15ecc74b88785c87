"""Distillation end to end: one training step of a tiny student on a tiny teacher with
llmref's KD loss and its analytic gradient (the kd_loss component), against torch autograd
on the same two models."""
import json

import numpy as np
import pytest

from llmref.ref.model import REFERENCE_OPS, decoder_forward, decoder_hidden, reference, rms_norm
from llmref.ref.model_config import TINY_CONFIGS, from_checkpoint, init_weights, load_config, \
    to_checkpoint
from llmref.tensorfile import dumps

STUDENT = {**TINY_CONFIGS["tiny_llama"], "hidden_size": 16, "intermediate_size": 32,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1}
KD = {"hinton": dict(temperature=2.0, alpha=0.5), "forward_kl": dict(temperature=2.0),
      "reverse_kl": dict(temperature=1.5), "jsd": dict(temperature=1.0, beta=0.3)}
LR = 0.5


def _batch(rng, vocab):
    ids = rng.integers(0, vocab, size=(2, 7))
    labels = np.concatenate([ids[:, 1:], np.full((2, 1), -100)], axis=1)  # next token; last ignored
    mask = np.ones(ids.shape, dtype=bool)
    mask[1, :2] = False  # a masked prefix (e.g. a prompt)
    return ids, labels, mask


def kd(student_logits, teacher_logits, labels, mask, kind):
    params = dict(dict(temperature=2.0, alpha=0.5, beta=0.5, ignore_index=-100), **KD[kind])
    out = reference("kd_loss")(student_logits=student_logits, teacher_logits=teacher_logits,
                               labels=labels, mask=mask, kind=kind, **params)
    return float(np.asarray(out["loss"]).reshape(-1)[0]), np.asarray(out["grad"])


@pytest.mark.parametrize("kind", list(KD))
def test_head_step_with_the_analytic_gradient_lowers_the_loss(kind):
    """With the head as the trained part, llmref alone takes the step: dL/dW_head = sum_t
    g_t h_t^T for g = kd_loss's gradient and h the final-normed hidden states, and a small
    step along it lowers the loss by about lr |dL/dW|^2 (first order)."""
    rng = np.random.default_rng(0)
    teacher_c, student_c = load_config(TINY_CONFIGS["tiny_llama"]), load_config(STUDENT)
    teacher, student = init_weights(teacher_c, rng), init_weights(student_c, rng)
    ids, labels, mask = _batch(rng, student_c.vocab_size)
    z_t = decoder_forward(teacher_c, teacher, ids)
    loss, grad = kd(decoder_forward(student_c, student, ids), z_t, labels, mask, kind)
    h = rms_norm(student_c, student["final_norm"], decoder_hidden(student_c, student, ids),
                 REFERENCE_OPS)  # (B, L, D): what the head sees
    d_head = np.einsum("blv,bld->vd", grad, h)  # (V, D)
    step = 1e-3
    stepped = dict(student, lm_head=student["lm_head"] - step * d_head)
    new_loss, _ = kd(decoder_forward(student_c, stepped, ids), z_t, labels, mask, kind)
    assert new_loss < loss
    assert (loss - new_loss) == pytest.approx(step * np.sum(d_head ** 2), rel=0.05)


def _torch_kd(torch, z_s, z_t, labels, mask, kind):
    """The same losses written directly in torch (their gradients come from autograd)."""
    p = dict(dict(temperature=2.0, alpha=0.5, beta=0.5), **KD[kind])
    valid = torch.tensor(mask) & (torch.tensor(labels) != -100)
    zs, zt = z_s[valid], z_t[valid]  # (n, V)
    t = p["temperature"]
    log_q, log_p = torch.log_softmax(zs / t, -1), torch.log_softmax(zt / t, -1)

    def kl(log_a, log_b):
        return (log_a.exp() * (log_a - log_b)).sum(-1)

    if kind == "hinton":
        hard = torch.nn.functional.cross_entropy(zs, torch.tensor(labels)[valid], reduction="none")
        per_token = p["alpha"] * t * t * kl(log_p, log_q) + (1 - p["alpha"]) * hard
    elif kind == "forward_kl":
        per_token = kl(log_p, log_q)
    elif kind == "reverse_kl":
        per_token = kl(log_q, log_p)
    else:
        b = p["beta"]
        log_m = torch.logsumexp(torch.stack([log_p + np.log(b), log_q + np.log(1 - b)]), 0)
        per_token = b * kl(log_p, log_m) + (1 - b) * kl(log_q, log_m)
    return per_token.mean()


@pytest.mark.crosscheck
@pytest.mark.parametrize("kind", list(KD))
def test_one_training_step_matches_torch_autograd(kind, tmp_path):
    """Teacher (tiny Llama, 2 layers) and student (1 layer, hidden 16) as transformers models
    (float64) holding llmref's weights. The loss and dL/dlogits from llmref's kd_loss equal
    torch's loss and autograd gradient; back-propagating llmref's gradient through the
    student gives every parameter the gradient of the torch loss; after one SGD step the
    student, loaded back into llmref by the name map, gives the torch student's logits."""
    torch = pytest.importorskip("torch", reason="the crosscheck extra (torch) is not installed")
    transformers = pytest.importorskip("transformers", reason="the crosscheck extra is not installed")
    rng = np.random.default_rng(1)
    teacher_c, student_c = load_config(TINY_CONFIGS["tiny_llama"]), load_config(STUDENT)
    teacher, student = init_weights(teacher_c, rng), init_weights(student_c, rng)
    ids, labels, mask = _batch(rng, student_c.vocab_size)

    def hf(config, raw, weights, name):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(dumps(to_checkpoint(config, weights), {"format": "pt"}))
        (folder / "config.json").write_text(json.dumps(raw))
        return transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float64)

    hf_teacher = hf(teacher_c, TINY_CONFIGS["tiny_llama"], teacher, "teacher").eval()
    hf_student = hf(student_c, STUDENT, student, "student").eval()  # eval: no dropout anywhere
    with torch.no_grad():
        z_t = hf_teacher(torch.tensor(ids)).logits
    z_s = hf_student(torch.tensor(ids)).logits
    z_s.retain_grad()
    torch_loss = _torch_kd(torch, z_s, z_t, labels, mask, kind)
    torch_loss.backward()
    autograd = {n: p.grad.clone() for n, p in hf_student.named_parameters()}

    ours_zs, ours_zt = decoder_forward(student_c, student, ids), decoder_forward(teacher_c, teacher, ids)
    scale = np.abs(ours_zs).max()
    # transformers' RoPE angles are float32 even in a float64 model: logits agree to ~1e-7
    np.testing.assert_allclose(z_s.detach().numpy(), ours_zs, atol=1e-6 * scale, rtol=0)
    loss, grad = kd(ours_zs, ours_zt, labels, mask, kind)
    assert loss == pytest.approx(torch_loss.item(), rel=1e-5)
    np.testing.assert_allclose(grad, z_s.grad.numpy(), atol=1e-5 * np.abs(grad).max(), rtol=0)

    hf_student.zero_grad()
    hf_student(torch.tensor(ids)).logits.backward(torch.tensor(grad))  # llmref's dL/dz upstream
    for name, param in hf_student.named_parameters():
        np.testing.assert_allclose(param.grad.numpy(), autograd[name].numpy(),
                                   atol=1e-5 * autograd[name].abs().max().item(), rtol=0, err_msg=name)
    with torch.no_grad():
        for param in hf_student.parameters():
            param -= LR * param.grad  # one SGD step along llmref's gradient
        stepped_logits = hf_student(torch.tensor(ids)).logits.numpy()
    stepped = from_checkpoint(student_c, {n: p.detach().numpy() for n, p in hf_student.named_parameters()})
    np.testing.assert_allclose(decoder_forward(student_c, stepped, ids), stepped_logits,
                               atol=1e-6 * np.abs(stepped_logits).max(), rtol=0)
    new_loss, _ = kd(decoder_forward(student_c, stepped, ids), ours_zt, labels, mask, kind)
    assert new_loss < loss  # the step distils
