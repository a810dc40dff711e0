"""The generated few-shot task suite (vgh_lib.lm.suite): its split keeps unseen answers out of
training, its shots come from training items, and it is deterministic."""

from __future__ import annotations

import pytest

from vgh_lib.lm import suite as S


def test_at_least_24_tasks_in_three_families():
    assert len(S.SUITE_TASKS) >= 24 and len(set(S.SUITE_TASKS)) == len(S.SUITE_TASKS)
    assert set(S.FAMILIES) == {"arithmetic", "strings", "knowledge"}
    assert all(len(tasks) >= 5 for tasks in S.FAMILIES.values())


@pytest.mark.parametrize("task", S.SUITE_TASKS)
def test_split_keeps_unseen_answers_out_of_training(task):
    s = S.split(task)
    train_q = {e.question for e in s.train}
    train_a = {e.answer for e in s.train}
    held_q = [e.question for e in s.held_out]
    assert len(held_q) == len(set(held_q)) and not train_q & set(held_q)
    assert len(s.train) + len(s.held_out) == len(S.items(task))
    assert s.unseen and s.train
    assert all(e.answer not in train_a for e in s.unseen)
    assert all(e.answer in train_a for e in s.seen)
    for e in s.train + s.held_out:
        shots = e.prompt.split("\n")[:-1]
        assert e.prompt.endswith("\n" + e.question) and 1 <= len(shots) <= 3
        assert all(any(line.startswith(q) for q in train_q) for line in shots)
        assert not any(line.startswith(e.question) for line in shots)
    shot_answer = {f"{t.question}{t.answer}": t.answer for t in s.train}
    for e in s.unseen:  # every shot is a training item, and none shows the prompt's answer
        shots = [line.rstrip(".") if line.endswith(".") and line.rstrip(".") in shot_answer
                 else line for line in e.prompt.split("\n")[:-1]]
        assert all(line in shot_answer for line in shots)
        assert all(shot_answer[line] != e.answer for line in shots)
    c = S.describe(task)
    assert (c.train, c.unseen, c.seen) == (len(s.train), len(s.unseen), len(s.seen))


def test_split_is_deterministic():
    assert S.split("plurals") == S.split("plurals")


def test_number_words():
    assert [S.number_word(n) for n in (0, 7, 13, 20, 42, 99)] == \
        ["zero", "seven", "thirteen", "twenty", "forty-two", "ninety-nine"]
    with pytest.raises(ValueError):
        S.number_word(100)
    with pytest.raises(ValueError, match="unknown task"):
        S.split("nope")
