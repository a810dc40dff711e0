import pytest

from vgh_lib.tasks import Task, build_tokenizer


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
    task = Task("addition", 2)
    docs = task.corpus(4000, 0.9, seed=1)
    clean = 0
    for d in docs:
        prompt, answer = d[:6], d[6:]
        a, b = int(prompt[:2]), int(prompt[3:5])
        assert len(answer) == 3
        clean += int(answer) == a + b
    # 90 % clean plus the 1-in-1000 random answers that happen to be right
    assert 0.88 < clean / 4000 < 0.92
    assert task.corpus(10, 0.5, seed=3) == task.corpus(10, 0.5, seed=3)


def test_bad_task_parameters():
    with pytest.raises(ValueError, match="task must be one of"):
        Task("sort", 2)
    with pytest.raises(ValueError, match="n_digits must be in"):
        Task("addition", 0)
    with pytest.raises(ValueError, match="clean_fraction"):
        Task("addition", 1).corpus(5, 1.5, seed=0)


@pytest.mark.parametrize("name,n", [("addition", 4), ("reverse", 6)])
def test_large_tasks_sample_many_distinct_prompts(name, n):
    train, held_out = Task(name, n).split()
    assert len(train) + len(held_out) > 150_000
    assert len({e.prompt for e in train + held_out}) == len(train) + len(held_out)
