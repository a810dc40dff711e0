"""Importing vgh_lib silences only transformers' attention-mask warning, nothing else."""

import subprocess
import sys

CODE = """
import torch{imp}
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging
m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, pad_token_id=0,
                               bos_token_id=1, eos_token_id=2))
m(input_ids=torch.tensor([[1, 2, 0]]))
logging.get_logger("transformers.modeling_utils").warning("another warning")
"""


def _stderr(imp: str) -> str:
    return subprocess.run([sys.executable, "-c", CODE.format(imp=imp)], capture_output=True,
                          text=True, check=True).stderr


def test_only_the_sampled_pad_warning_is_dropped():
    plain, ours = _stderr(""), _stderr("\nimport vgh_lib")
    assert "attention_mask" in plain and "attention_mask" not in ours
    assert "another warning" in ours
