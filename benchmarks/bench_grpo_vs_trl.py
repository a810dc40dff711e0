"""One GRPO step of vgh_lib.tiny.grpo against TRL's GRPOTrainer, in the same run.

A step is what a training loop does per batch: sample ``group`` completions for each of
``prompts`` prompts, score them, compute the group advantages and the clipped loss, back-propagate
and take one AdamW step. Both sides start from copies of the same tiny GPT-2, on the same
prompts (the addition task), on the CPU with one thread, in float32; the speed-up ratio of
vgh_lib.tiny.grpo over TRL is printed. Needs the ``test`` extra (TRL).

    .venv/bin/python benchmarks/bench_grpo_vs_trl.py [--prompts 8] [--group 8] [--layers 2]
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import warnings

import torch
from _timing import best_of

from vgh_lib.tiny import grpo, sampling
from vgh_lib.tiny.models import tiny_gpt2
from vgh_lib.tiny.tasks import Task, build_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from datasets import Dataset
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    tok = build_tokenizer()
    train, _ = Task("addition", 2).split()
    examples = train[:args.prompts]
    prompts, answers = sampling.encode_prompts(tok, examples, "cpu")
    La = answers.shape[1]
    base = tiny_gpt2(tok, args.layers, args.embd, 4, prompts.shape[1] + La + 1, seed=0).eval()
    B = args.prompts * args.group

    # ---------------------------------------------------------------- vgh_lib.tiny.grpo
    ours = copy.deepcopy(base)
    opt = torch.optim.AdamW(ours.parameters(), lr=1e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    P, A = prompts.repeat_interleave(args.group, 0), answers.repeat_interleave(args.group, 0)

    def vgh_step():  # the body of grpo.train's loop
        noise = sampling.gumbel_noise((B, La, len(tok)), gen)
        comp = sampling.generate(ours, P, La, 1.0, noise)
        rewards = (comp == A).all(1).float()
        adv = grpo.group_advantages(rewards, args.group)
        mask = torch.ones_like(comp, dtype=torch.float32)
        with torch.no_grad():
            logp_old = sampling.completion_logprobs(ours, P, comp, 1.0)
        logp = sampling.completion_logprobs(ours, P, comp, 1.0)
        loss, _ = grpo.grpo_loss(logp, logp_old, adv, mask, 0.2, "token")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # ------------------------------------------------------------------ TRL GRPOTrainer
    def reward(completions, answer, **kwargs):
        return [float(c.strip() == a) for c, a in zip(completions, answer)]

    tmp = tempfile.TemporaryDirectory()
    cfg = GRPOConfig(output_dir=tmp.name, use_cpu=True, bf16=False, gradient_checkpointing=False,
                     per_device_train_batch_size=B, num_generations=args.group,
                     max_completion_length=La, report_to="none", loss_type="bnpo",
                     learning_rate=1e-4, weight_decay=0.0, temperature=1.0, top_k=0, seed=0,
                     disable_tqdm=True, logging_strategy="no", save_strategy="no")
    rows = [{"prompt": tok.bos_token + e.prompt, "answer": e.answer}
            for e in examples for _ in range(args.group)]
    trainer = GRPOTrainer(model=copy.deepcopy(base), reward_funcs=reward, args=cfg,
                          train_dataset=Dataset.from_list(rows[::args.group]),
                          processing_class=tok)
    model = trainer.model
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train()'s loop
    model.train()

    def trl_step():  # generate and score (in _prepare_inputs), loss, backward; then the step
        trainer.training_step(model, rows, None)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    vgh_step(), trl_step()  # warm-up
    # interleaved, so that a change in the machine's load hits both sides alike
    pairs = [(best_of(vgh_step, 1), best_of(trl_step, 1)) for _ in range(args.repeats)]
    t_ours, t_trl = min(p[0] for p in pairs), min(p[1] for p in pairs)
    print(f"{args.prompts} prompts x {args.group} completions of {La} tokens, {args.layers} "
          f"layers, d={args.embd}, CPU, 1 thread, best of {args.repeats} (interleaved)")
    print(f"vgh_lib.tiny.grpo     {t_ours:8.4f} s per step")
    print(f"TRL GRPOTrainer  {t_trl:8.4f} s per step")
    print(f"speed-up         {t_trl / t_ours:8.2f}x (TRL time / vgh_lib time)")


if __name__ == "__main__":
    main()
