"""A larger few-shot task suite for a real LM, generated in code, with held-out answers that
training never rewards (issue 20; the successor design to notebook 08's seven tasks).

Three families of tasks with unique answers: arithmetic and comparison, string and letter
operations, and lexical and world knowledge. Every prompt is three solved shots and the
question, newline-separated, in the format of :mod:`vgh_lib.lm.tasks` (whose seven tasks,
and notebook 08's registered design, are unchanged).

**The split is by answer first.** A task's distinct answers are hashed, and every item whose
answer falls in the held-out quarter is held out; so is every other item whose question hashes
into the held-out fifth; the rest train. A held-out prompt is *unseen* when its answer is no
training item's answer (training cannot raise it by shifting the prior over answer tokens),
and *seen* otherwise. The shots of every prompt come
from the training items. :func:`split` returns all three lists; :func:`describe` counts them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.lm.tasks import LMExample, N_SHOTS

UNSEEN_ANSWER_SHARE = 0.25
SEEN_QUESTION_SHARE = 0.2

WORDS = (
    "able", "acid", "area", "army", "away", "baby", "back", "ball", "band", "bank", "base",
    "bath", "bear", "beat", "bell", "belt", "bird", "blue", "boat", "body", "bone", "book",
    "boot", "bowl", "bread", "brick", "cake", "calm", "camp", "card", "care", "cart", "case",
    "cash", "cast", "cell", "chair", "chin", "city", "clay", "club", "coal", "coat", "code",
    "cold", "cook", "cool", "corn", "cost", "crow", "cure", "dark", "data", "dawn", "deal",
    "deer", "desk", "dish", "door", "dove", "drum", "duck", "dust", "earth", "east", "edge",
    "face", "fact", "farm", "fear", "film", "fire", "fish", "flag", "flat", "food", "foot",
    "fork", "frog", "game", "gate", "gift", "girl", "glass", "goat", "gold", "golf", "grape",
    "grass", "hair", "hall", "hand", "harp", "hat", "head", "heat", "hill", "home", "hook",
    "horn", "horse", "house", "iron", "jail", "jazz", "king", "kite", "lake", "lamp", "land",
    "leaf", "lion", "lock", "lung", "mail", "map", "mask", "meal", "milk", "mind", "mint",
    "moon", "nail", "name", "neck", "nest", "news", "night", "nose", "note", "oven", "page",
    "pain", "park", "path", "pear", "pen", "pig", "pink", "pipe", "plan", "plum", "pool",
    "rain", "ring", "road", "rock", "roof", "room", "rope", "rose", "ruby", "salt", "sand",
    "seed", "ship", "shoe", "silk", "sink", "snow", "soap", "sock", "song", "soup", "star",
    "stone", "sun", "swan", "table", "tail", "tea", "tent", "time", "town", "tree", "vase",
    "wall", "wave", "wind", "wine", "wing", "wolf", "wood", "wool", "yard", "year", "zero",
)

ANTONYMS = (
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("light", "dark"), ("old", "new"), ("rich", "poor"), ("early", "late"), ("high", "low"),
    ("hard", "soft"), ("long", "short"), ("open", "closed"), ("wet", "dry"), ("full", "empty"),
    ("strong", "weak"), ("thick", "thin"), ("loud", "quiet"), ("clean", "dirty"), ("true", "false"),
    ("win", "lose"), ("buy", "sell"), ("give", "take"), ("push", "pull"), ("above", "below"),
    ("inside", "outside"), ("first", "last"), ("left", "right"), ("north", "south"),
    ("east", "west"), ("day", "night"), ("love", "hate"), ("war", "peace"), ("begin", "end"),
    ("friend", "enemy"), ("question", "answer"), ("cheap", "expensive"), ("safe", "dangerous"),
    ("deep", "shallow"), ("wide", "narrow"), ("heavy", "light"), ("young", "old"),
    ("smooth", "rough"), ("sweet", "sour"), ("brave", "afraid"), ("sharp", "dull"),
    ("tight", "loose"), ("wild", "tame"), ("noisy", "silent"), ("arrive", "leave"),
    ("accept", "refuse"), ("add", "subtract"), ("alive", "dead"), ("always", "never"),
    ("asleep", "awake"), ("before", "after"), ("best", "worst"), ("black", "white"),
    ("borrow", "lend"), ("came", "went"), ("come", "go"), ("correct", "wrong"), ("entrance", "exit"),
    ("female", "male"), ("floor", "ceiling"), ("forget", "remember"), ("guilty", "innocent"),
    ("import", "export"), ("increase", "decrease"), ("maximum", "minimum"), ("more", "less"),
    ("morning", "evening"), ("near", "far"), ("public", "private"), ("rise", "fall"),
    ("start", "finish"), ("sunrise", "sunset"), ("teacher", "student"), ("winner", "loser"),
)

PLURALS = (
    ("cat", "cats"), ("dog", "dogs"), ("book", "books"), ("tree", "trees"), ("car", "cars"),
    ("house", "houses"), ("bird", "birds"), ("apple", "apples"), ("chair", "chairs"),
    ("river", "rivers"), ("box", "boxes"), ("bus", "buses"), ("dish", "dishes"), ("glass", "glasses"),
    ("church", "churches"), ("fox", "foxes"), ("brush", "brushes"), ("watch", "watches"),
    ("city", "cities"), ("baby", "babies"), ("lady", "ladies"), ("party", "parties"),
    ("story", "stories"), ("family", "families"), ("country", "countries"), ("berry", "berries"),
    ("leaf", "leaves"), ("knife", "knives"), ("wife", "wives"), ("wolf", "wolves"),
    ("life", "lives"), ("half", "halves"), ("shelf", "shelves"), ("man", "men"), ("woman", "women"),
    ("child", "children"), ("mouse", "mice"), ("goose", "geese"), ("tooth", "teeth"),
    ("foot", "feet"), ("person", "people"), ("ox", "oxen"), ("cactus", "cacti"),
    ("potato", "potatoes"), ("tomato", "tomatoes"), ("hero", "heroes"), ("key", "keys"),
    ("day", "days"), ("toy", "toys"), ("boy", "boys"), ("girl", "girls"), ("hand", "hands"),
    ("eye", "eyes"), ("table", "tables"), ("pen", "pens"), ("lion", "lions"), ("horse", "horses"),
    ("cup", "cups"), ("hat", "hats"), ("flower", "flowers"), ("door", "doors"), ("window", "windows"),
    ("wish", "wishes"), ("class", "classes"), ("kiss", "kisses"), ("lunch", "lunches"),
    ("beach", "beaches"), ("army", "armies"), ("puppy", "puppies"), ("fly", "flies"),
    ("crisis", "crises"), ("thesis", "theses"), ("analysis", "analyses"), ("index", "indices"),
    ("phenomenon", "phenomena"), ("criterion", "criteria"), ("calf", "calves"), ("loaf", "loaves"),
)

PAST_TENSES = (
    ("go", "went"), ("see", "saw"), ("eat", "ate"), ("take", "took"), ("give", "gave"),
    ("come", "came"), ("run", "ran"), ("write", "wrote"), ("speak", "spoke"), ("drink", "drank"),
    ("swim", "swam"), ("sing", "sang"), ("begin", "began"), ("break", "broke"), ("choose", "chose"),
    ("drive", "drove"), ("fly", "flew"), ("grow", "grew"), ("know", "knew"), ("throw", "threw"),
    ("buy", "bought"), ("bring", "brought"), ("think", "thought"), ("teach", "taught"),
    ("catch", "caught"), ("fight", "fought"), ("find", "found"), ("make", "made"), ("say", "said"),
    ("pay", "paid"), ("sell", "sold"), ("tell", "told"), ("feel", "felt"), ("keep", "kept"),
    ("sleep", "slept"), ("leave", "left"), ("meet", "met"), ("send", "sent"), ("spend", "spent"),
    ("build", "built"), ("lose", "lost"), ("hold", "held"), ("stand", "stood"), ("sit", "sat"),
    ("win", "won"), ("get", "got"), ("forget", "forgot"), ("wear", "wore"), ("steal", "stole"),
    ("freeze", "froze"), ("ride", "rode"), ("rise", "rose"), ("shake", "shook"), ("wake", "woke"),
    ("walk", "walked"), ("play", "played"), ("jump", "jumped"), ("talk", "talked"),
    ("cook", "cooked"), ("clean", "cleaned"), ("open", "opened"), ("call", "called"),
    ("help", "helped"), ("work", "worked"), ("dance", "danced"), ("smile", "smiled"),
    ("live", "lived"), ("move", "moved"), ("love", "loved"), ("stop", "stopped"), ("plan", "planned"),
    ("cry", "cried"), ("try", "tried"), ("study", "studied"), ("carry", "carried"),
)

COUNTRY_CONTINENT = (
    ("France", "Europe"), ("Germany", "Europe"), ("Italy", "Europe"), ("Spain", "Europe"),
    ("Poland", "Europe"), ("Sweden", "Europe"), ("Norway", "Europe"), ("Greece", "Europe"),
    ("Portugal", "Europe"), ("Ireland", "Europe"), ("Austria", "Europe"), ("Hungary", "Europe"),
    ("Finland", "Europe"), ("Denmark", "Europe"), ("Belgium", "Europe"), ("Ukraine", "Europe"),
    ("Japan", "Asia"), ("China", "Asia"), ("India", "Asia"), ("Thailand", "Asia"),
    ("Vietnam", "Asia"), ("Korea", "Asia"), ("Nepal", "Asia"), ("Iran", "Asia"), ("Iraq", "Asia"),
    ("Pakistan", "Asia"), ("Indonesia", "Asia"), ("Mongolia", "Asia"), ("Malaysia", "Asia"),
    ("Egypt", "Africa"), ("Kenya", "Africa"), ("Nigeria", "Africa"), ("Ghana", "Africa"),
    ("Morocco", "Africa"), ("Ethiopia", "Africa"), ("Algeria", "Africa"), ("Uganda", "Africa"),
    ("Senegal", "Africa"), ("Somalia", "Africa"), ("Zambia", "Africa"), ("Tanzania", "Africa"),
    ("Brazil", "South America"), ("Argentina", "South America"), ("Chile", "South America"),
    ("Peru", "South America"), ("Colombia", "South America"), ("Venezuela", "South America"),
    ("Bolivia", "South America"), ("Uruguay", "South America"), ("Ecuador", "South America"),
    ("Canada", "North America"), ("Mexico", "North America"), ("Cuba", "North America"),
    ("Guatemala", "North America"), ("Panama", "North America"), ("Jamaica", "North America"),
    ("Honduras", "North America"), ("Australia", "Oceania"), ("Fiji", "Oceania"),
    ("Samoa", "Oceania"), ("Tonga", "Oceania"),
)

# notebook 08's capitals (less "Buenos", which is not a whole answer) and more
CAPITALS = tuple(c for c in lm_tasks.CAPITALS if c[1] != "Buenos") + (
    ("India", "Delhi"), ("Iraq", "Baghdad"), ("Syria", "Damascus"), ("Lebanon", "Beirut"),
    ("Jordan", "Amman"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"),
    ("Philippines", "Manila"), ("Nepal", "Kathmandu"), ("Mongolia", "Ulaanbaatar"),
    ("Afghanistan", "Kabul"), ("Pakistan", "Islamabad"), ("Nigeria", "Abuja"),
    ("Ghana", "Accra"), ("Morocco", "Rabat"), ("Algeria", "Algiers"),
    ("Tunisia", "Tunis"), ("Libya", "Tripoli"), ("Sudan", "Khartoum"), ("Uganda", "Kampala"),
    ("Senegal", "Dakar"), ("Colombia", "Bogota"), ("Venezuela", "Caracas"), ("Ecuador", "Quito"),
    ("Bolivia", "Sucre"), ("Uruguay", "Montevideo"), ("Paraguay", "Asuncion"),
    ("Jamaica", "Kingston"), ("Australia", "Canberra"),
    ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"), ("Czechia", "Prague"), ("Slovakia", "Bratislava"), ("Latvia", "Riga"),
    ("Estonia", "Tallinn"), ("Lithuania", "Vilnius"), ("Iceland", "Reykjavik"),
    ("Switzerland", "Bern"), ("Netherlands", "Amsterdam"),
)

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def number_word(n: int) -> str:
    """0 ≤ n < 100 in words: 42 → "forty-two"."""
    if not 0 <= n < 100:
        raise ValueError(f"n must be in [0, 100), got {n}")
    if n < 20:
        return NUMBER_WORDS[n]
    t, u = divmod(n, 10)
    return TENS[t] + ("" if u == 0 else "-" + NUMBER_WORDS[u])


def _arithmetic() -> dict[str, list[tuple[str, str]]]:
    r = range
    return {
        "add two-digit": [(f"{a}+{b}=", str(a + b)) for a in r(10, 60) for b in r(10, 60)],
        "subtract": [(f"{a}-{b}=", str(a - b)) for a in r(10, 100) for b in r(1, 10)],
        "multiply": [(f"{a}*{b}=", str(a * b)) for a in r(2, 20) for b in r(2, 10)],
        "double": [(f"2*{a}=", str(2 * a)) for a in r(10, 500)],
        "halve": [(f"{2 * a}/2=", str(a)) for a in r(10, 500)],
        "add ten": [(f"{a}+10=", str(a + 10)) for a in r(100, 990)],
        "successor": [(f"next({a})=", str(a + 1)) for a in r(100, 999)],
        "predecessor": [(f"prev({a})=", str(a - 1)) for a in r(101, 1000)],
        "max of three": [(f"max({a},{b},{c})=", str(max(a, b, c)))
                         for a in r(10, 99, 7) for b in r(12, 99, 9) for c in r(15, 99, 11)
                         if len({a, b, c}) == 3],
        "add one-digit": [(f"{a}+{b}=", str(a + b)) for a in r(10) for b in r(10)],
        "square": [(f"{a}^2=", str(a * a)) for a in r(2, 60)],
        "times ten": [(f"{a}*10=", str(10 * a)) for a in r(10, 500)],
        "min of two": [(f"min({a},{b})=", str(min(a, b))) for a in r(10, 99, 3) for b in r(11, 99, 4)
                       if a != b],
    }


def _strings() -> dict[str, list[tuple[str, str]]]:
    words = sorted(set(WORDS))
    return {
        "first letter": [(f"first letter of {w}:", f" {w[0]}") for w in words],
        "last letter": [(f"last letter of {w}:", f" {w[-1]}") for w in words],
        "next letter": [(f"letter after {a}:", f" {b}") for a, b in zip(LETTERS, LETTERS[1:])],
        "previous letter": [(f"letter before {b}:", f" {a}") for a, b in zip(LETTERS, LETTERS[1:])],
        "reverse word": [(f"reverse of {w}:", f" {w[::-1]}") for w in words if len(w) <= 4],
        "uppercase": [(f"uppercase of {w}:", f" {w.upper()}") for w in words],
        "capitalize": [(f"capitalized {w}:", f" {w.capitalize()}") for w in words],
        "second letter": [(f"second letter of {w}:", f" {w[1]}") for w in words],
    }


def _knowledge() -> dict[str, list[tuple[str, str]]]:
    return {
        "capitals": [(f"The capital of {c} is", f" {k}") for c, k in CAPITALS],
        "continent": [(f"{c} is in", f" {k}") for c, k in COUNTRY_CONTINENT],
        "antonyms": [(f"The opposite of {a} is", f" {b}") for a, b in ANTONYMS],
        "plurals": [(f"The plural of {a} is", f" {b}") for a, b in PLURALS],
        "past tense": [(f"The past tense of {a} is", f" {b}") for a, b in PAST_TENSES],
        "number words": [(f"{n} in words is", f" {number_word(n)}") for n in range(100)],
        "digits of words": [(f"{number_word(n)} as a number is", f" {n}") for n in range(100)],
        "month after": [(f"The month after {a} is", f" {b}") for a, b in zip(MONTHS, MONTHS[1:] + MONTHS[:1])],
        "day after": [(f"The day after {a} is", f" {b}") for a, b in zip(DAYS, DAYS[1:] + DAYS[:1])],
        "month before": [(f"The month before {b} is", f" {a}") for a, b in zip(MONTHS, MONTHS[1:] + MONTHS[:1])],
        "day before": [(f"The day before {b} is", f" {a}") for a, b in zip(DAYS, DAYS[1:] + DAYS[:1])],
        "country of capital": [(f"{k} is the capital of", f" {c}") for c, k in CAPITALS],
        "singular": [(f"The singular of {b} is", f" {a}") for a, b in PLURALS],
        "present tense": [(f"The present tense of {b} is", f" {a}") for a, b in PAST_TENSES],
    }


FAMILIES: dict[str, dict[str, list[tuple[str, str]]]] = {
    "arithmetic": _arithmetic(), "strings": _strings(), "knowledge": _knowledge()}
SUITE_TASKS: tuple[str, ...] = tuple(t for fam in FAMILIES.values() for t in fam)
SENTENCE_FAMILIES = ("knowledge",)


def family(task: str) -> str:
    for name, tasks in FAMILIES.items():
        if task in tasks:
            return name
    raise ValueError(f"unknown task {task!r}; allowed: {', '.join(SUITE_TASKS)}")


def items(task: str) -> list[tuple[str, str]]:
    """Every distinct (question, answer) of ``task``."""
    return list(dict.fromkeys(FAMILIES[family(task)][task]))


def _fraction(*parts: str) -> float:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:8], 16) / 16**8


@dataclass(frozen=True)
class Split:
    """A task's prompts: ``train``; ``unseen`` held-out prompts whose answers no training item
    has; ``seen`` held-out prompts whose answers training items also have."""

    task: str
    train: list[LMExample]
    unseen: list[LMExample]
    seen: list[LMExample]

    @property
    def held_out(self) -> list[LMExample]:
        return self.unseen + self.seen


def split(task: str) -> Split:
    """The deterministic split of ``task`` (module docstring); every list in a fixed,
    seeded order that mixes the items."""
    its = items(task)
    answers = sorted({a for _, a in its})
    unseen_answers = {a for a in answers if _fraction(task, "answer", a) < UNSEEN_ANSWER_SHARE}
    if len(unseen_answers) == len(answers):  # keep at least one training answer
        unseen_answers.discard(answers[0])
    held, train = [], []
    for q, a in its:
        if a in unseen_answers or _fraction(task, "question", q) < SEEN_QUESTION_SHARE:
            held.append((q, a))
        else:
            train.append((q, a))
    train_answers = {a for _, a in train}
    groups = {"train": train,
              "unseen": [(q, a) for q, a in held if a not in train_answers],
              "seen": [(q, a) for q, a in held if a in train_answers]}
    sentence = family(task) in SENTENCE_FAMILIES

    def line(q, a):
        return f"{q}{a}." if sentence else f"{q}{a}"

    out = {}
    for name, group in groups.items():
        examples = []
        for q, a in group:
            rng = random.Random(f"{task}|{q}")
            pool = [it for it in groups["train"] if it[0] != q]
            shots = rng.sample(pool, min(N_SHOTS, len(pool)))
            prompt = "\n".join(line(sq, sa) for sq, sa in shots) + "\n" + q
            examples.append(LMExample(task, q, a, prompt))
        random.Random(f"{task}|{name}").shuffle(examples)
        out[name] = examples
    return Split(task, out["train"], out["unseen"], out["seen"])


@dataclass(frozen=True)
class Counts:
    task: str
    family: str
    train: int
    unseen: int                  # held-out prompts whose answer no training prompt has
    seen: int
    seen_share: float            # share of held-out answers that also appear in training


def describe(task: str) -> Counts:
    s = split(task)
    n_ho = len(s.held_out)
    return Counts(task, family(task), len(s.train), len(s.unseen), len(s.seen),
                  len(s.seen) / n_ho if n_ho else float("nan"))
