import pytest

from vgh_lib.tiny.tasks import Task, build_tokenizer


def test_tokenizer_round_trip():
    tok = build_tokenizer()
    for text in ["12+34=046", "0713>3170", "9+9=18"]:
        ids = tok(text)["input_ids"]
        assert len(ids) == len(text)  # one token per character
        assert tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("<eos>") == tok.eos_token_id
    assert tok.decode(tok("1?")["input_ids"]) == "1<unk>"


def test_tokenizer_save_and_reload(tmp_path):
    from transformers import AutoTokenizer

    build_tokenizer().save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again("12+34=")["input_ids"] == build_tokenizer()("12+34=")["input_ids"]


@pytest.mark.parametrize("name,n", [("addition", 1), ("addition", 2), ("reverse", 3)])
def test_train_and_eval_prompts_are_disjoint(name, n):
    train, held_out = Task(name, n, n_eval=50).split()
    assert not {e.prompt for e in train} & {e.prompt for e in held_out}
    assert len(held_out) == 50 or len(held_out) == (len(train) + len(held_out)) // 2


def test_examples_by_hand():
    add = Task("addition", 2)
    ex = add.example((7, 95))
    assert (ex.prompt, ex.answer) == ("07+95=", "102")
    assert add.reward(ex, "102") == 1.0 and add.reward(ex, "102<eos>99") == 1.0
    assert add.reward(ex, "120") == 0.0 and add.reward(ex, "10") == 0.0
    rev = Task("reverse", 4)
    assert rev.example((1203,)) == type(ex)("1203>", "3021")
    assert rev.answer_length == 4 and add.answer_length == 3


def test_corpus_clean_fraction():
    import torch

    tok = build_tokenizer()
    data = Task("addition", 2).tokenized(tok)
    docs, clean = data.corpus_batch(4000, 0.9, torch.Generator().manual_seed(1))
    assert docs.shape == (4000, 1 + 6 + 3)
    correct = 0
    for row in docs:
        text = tok.decode(row[1:])
        a, b, answer = int(text[:2]), int(text[3:5]), text[6:]
        assert len(answer) == 3 and answer.isdigit()
        correct += int(answer) == a + b
    assert 0.87 < clean.float().mean() < 0.93
    # clean documents are correct; corrupted ones are right only by chance (1 in 1000)
    assert clean.sum() <= correct <= clean.sum() + 15
    again, _ = data.corpus_batch(4000, 0.9, torch.Generator().manual_seed(1))
    assert torch.equal(docs, again)


def test_bad_task_parameters():
    with pytest.raises(ValueError, match="task must be one of"):
        Task("sort", 2)
    with pytest.raises(ValueError, match="n_digits must be in"):
        Task("addition", 0)
    import torch

    data = Task("addition", 1).tokenized(build_tokenizer())
    with pytest.raises(ValueError, match="clean_fraction"):
        data.corpus_batch(5, 1.5, torch.Generator())


@pytest.mark.parametrize("name,n", [("addition", 4), ("reverse", 6)])
def test_large_tasks_sample_many_distinct_prompts(name, n):
    train, held_out = Task(name, n).split()
    assert len(train) + len(held_out) > 150_000
    assert len({e.prompt for e in train + held_out}) == len(train) + len(held_out)
