"""How the offline writer reads one answer: words or none, language, cues, negation, masks."""

from __future__ import annotations

import pytest

from server.generators.bank import Bank, normal
from server.generators.reading import read
from server.generators.wording import category_hits, masked, negation_distance


@pytest.mark.parametrize(
    ("answer", "kind", "language"),
    [
        ("\U0001f937\u200d\u2640\ufe0f\U0001f605\U0001f643", "wordless", ""),
        ("...", "wordless", ""),
        ("no", "bare", ""),
        ("Nope.", "bare", ""),
        ("yes", "bare", ""),
        ("idk", "words", ""),
        ("not sure", "words", ""),
        ("I am tired, really tired", "words", ""),
        ("Ich wei\u00df es nicht.", "foreign", "German"),
        ("vielleicht", "foreign", "German"),
        ("Nein", "foreign", "German"),
        ("No s\u00e9, la verdad.", "foreign", "Spanish"),
        ("Prefiero ir a lo seguro, tengo familia.", "foreign", "Spanish"),
        ("quiz\u00e1s", "foreign", "Spanish"),
        ("Je ne sais pas.", "foreign", "French"),
        ("peut-\u00eatre", "foreign", "French"),
        ("I do not think there is a fair way", "words", ""),
        ("Dev says the caf\u00e9 in Rotterdam is lovely", "words", ""),
    ],
)
def test_an_answer_is_read_as_words_wordless_bare_or_foreign(
    bank: Bank, answer: str, kind: str, language: str
) -> None:
    reading = read(answer, bank.common)
    assert (reading.kind, reading.language) == (kind, language)


@pytest.mark.parametrize(
    ("answer", "cue"),
    [
        ("idk", "doubt"),
        ("not sure, maybe", "doubt"),
        ("I am tired, really tired", "weary"),
        ("always me who has to sort this out", "exasperation"),
        ("Oh great, another chance to lose money", "irony"),
        ("I'm worried it all goes wrong", "worry"),
        ("Definitely, no question", "certainty"),
        ("because the rent went up", "reason"),
        ("my gut says go", "gut"),
    ],
)
def test_cues_are_heard(bank: Bank, answer: str, cue: str) -> None:
    assert cue in read(answer, bank.common).cues


def test_always_and_not_worried_are_not_what_they_seem(bank: Bank) -> None:
    assert "certainty" not in read("always me who has to sort this out", bank.common).cues
    assert "worry" not in read("I'm not worried about it", bank.common).cues


@pytest.mark.parametrize(
    ("text", "word", "distance"),
    [
        ("i'm not brave", "brave", 1),
        ("i would never gamble", "gamble", 1),
        ("i don't want to invest", "invest", 3),
        ("i do not think there is a fair way", "fair", 5),
        ("i don't mind and i'd go for it", "go", None),
        ("i don't know if i'd go for it", "go", None),
        ("no, i'd take the leap", "take", None),
        ("i'd say no when i'm exhausted", "exhausted", None),
    ],
)
def test_negation_reaches_within_its_thought(text: str, word: str, distance: int | None) -> None:
    assert negation_distance(text, text.index(word)) == distance


def test_a_close_negation_turns_a_signal_around_and_a_far_one_cancels_it(bank: Bank) -> None:
    dims = list(bank.categories["ethics"].dimensions.values())
    courage = category_hits(normal("I'm not brave."), dims)["Courage"]
    assert courage == ((), ("not brave",))
    family = list(bank.categories["family"].dimensions.values())
    fairness = category_hits(normal("I do not think there is a fair way"), family)["Fairness"]
    assert fairness == ((), ())


def test_the_longest_signal_wins_across_dimensions(bank: Bank) -> None:
    dims = list(bank.categories["finance"].dimensions.values())
    hits = category_hits(normal("Protecting my future security"), dims)
    assert hits["Long-term thinking"][0] == ("future security",)
    assert hits["Risk tolerance"] == ((), ())


def test_waiting_and_saving_before_a_big_step_reads_as_long_term_thinking(bank: Bank) -> None:
    dims = list(bank.categories["finance"].dimensions.values())
    answer = "In the end we agreed to wait a year and save more before we commit to anything."
    hits = category_hits(normal(answer), dims)
    assert hits["Long-term thinking"] == (("wait a year", "save more"), ())


def test_what_a_person_goes_ahead_despite_is_not_how_they_lean(bank: Bank) -> None:
    """ "Even if it's awkward" names what the person overrides: not a sign of avoiding it."""
    dims = list(bank.categories["relationships"].dimensions.values())
    said = "I'd tell her the truth, even if it's awkward."
    assert category_hits(normal(said), dims)["Conflict handling"] == ((), ())
    avoided = "It's awkward, so I'd stay quiet."
    assert category_hits(normal(avoided), dims)["Conflict handling"] == (
        (),
        ("awkward", "stay quiet"),
    )


def test_look_alike_phrases_are_masked_without_moving_indexes(bank: Bank) -> None:
    text = normal("that kind of thing happens, to be fair, now and then")
    hidden = masked(text, bank.common.masks)
    assert len(hidden) == len(text)
    assert "kind" not in hidden and "fair" not in hidden
    assert hidden.endswith("now and then")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Everything. I'd want to know if she was struggling.", "Everything, even the hard parts"),
        ("I said yes before I saw the price, and I regret it.", "Yes, and I regret it"),
        ("Giving each person what they need, I think.", "What each person needs"),
        ("maybe the work, maybe the status", None),  # two replies fit: neither is taken
        ("I'd need someone to back me up", None),  # one shared word is not a paraphrase
        ("Doesn't bother me. I'd rather sleep at night.", None),  # a negation is no match
    ],
)
def test_an_answer_in_other_words_is_read_as_the_one_reply_it_says(
    bank: Bank, answer: str, expected: str | None
) -> None:
    from server.generators.bank import Lean, Reply
    from server.generators.reading import paraphrased

    offered: dict[str, Lean] = {
        "Everything, even the hard parts": "high",
        "Only what affects me": "neutral",
        "Yes, and I regret it": "low",
        "No, I agreed on purpose": "high",
        "What each person needs": "low",
        "The same for everyone": "high",
        "Mostly the work itself": "neutral",
        "Honestly, some of it is status": "high",
        "Yes, on my own if needed": "high",
        "It bothers me a lot": "high",
    }
    replies = tuple(Reply(text, lean) for text, lean in offered.items())
    found = paraphrased(answer, replies, bank.common)
    assert (found.text if found else None) == expected


# Rules heard in answers typed in a browser (the look at the distributed deployment).


@pytest.mark.parametrize(
    ("category", "label", "answer", "high", "low"),
    [
        # A dislike turns a close signal around, and only cancels a far one.
        ("finance", "Risk tolerance", "I hate gambling.", (), ("hate gambling",)),
        ("health", "Information seeking", "I hate going to the doctor.", (), ()),
        # A verb and its particle with a pronoun between them.
        ("health", "Information seeking", "I'd look it up online first.", ("look it up",), ()),
        # A thing compared with a hazard leans low, the thing compared taken in.
        (
            "finance",
            "Risk tolerance",
            "Investing feels like gambling to me.",
            (),
            ("investing feels like gambling",),
        ),
        ("finance", "Risk tolerance", "I'd gamble on it.", ("gamble",), ()),
        ("finance", "Risk tolerance", "Crypto feels like a gamble.", (), ("feels like a gamble",)),
        # A signal that is the object of the one before it leans as that one does.
        ("health", "Consistency", "I tend to give up on routines.", (), ("give up on routines",)),
        ("finance", "Risk tolerance", "Safe or bold?", ("bold",), ("safe",)),
        # A close negation is shown with the words that say it.
        (
            "finance",
            "Emotional control",
            "I wouldn't decide the same day.",
            ("wouldn't decide the same day",),
            (),
        ),
    ],
)
def test_dislikes_particles_comparisons_and_objects_are_read_as_a_person_would(
    bank: Bank, category: str, label: str, answer: str, high: tuple[str, ...], low: tuple[str, ...]
) -> None:
    dims = list(bank.categories[category].dimensions.values())
    assert category_hits(normal(answer), dims)[label] == (high, low)


@pytest.mark.parametrize(
    ("answer", "cue", "heard"),
    [
        ("My wife would push me to go, and I'd listen if she got worried.", "worry", False),
        ("She worries about it, and I'm worried too.", "worry", True),
        ("My parents will worry, but it's my call.", "worry", False),
        ("Sam's afraid I'll resent them.", "worry", False),
        ("My biggest fear is losing the house.", "worry", True),
        ("I worry about my kids.", "worry", True),
        ("I find it hard to say no to people I respect.", "doubt", False),
        ("Hard to say.", "doubt", True),
        ("I don't know if it's right.", "doubt", True),
        (
            "I'd check what my bank offers and maybe ask my sister, she knows more than me.",
            "doubt",
            False,
        ),
        ("Security, I guess, but maybe a side project is the compromise.", "doubt", True),
        ("maybe", "doubt", True),
        ("I'd look it up online first, probably too much.", "weary", False),
        ("It's all too much right now.", "weary", True),
    ],
)
def test_a_cue_is_the_persons_own_and_means_what_it_says(
    bank: Bank, answer: str, cue: str, heard: bool
) -> None:
    assert (cue in read(answer, bank.common).cues) == heard
