"""How the offline writer reads one answer: whether it has words, its language, and its cues."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from server.generators.bank import Common, Reply, normal
from server.generators.wording import masked, negated, spans

# "words": English (or nothing else recognisable); "wordless": emoji or punctuation only;
# "bare": a yes or a no in a word or two; "foreign": written in another language.
Kind = Literal["words", "wordless", "bare", "foreign"]

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_EDGES = " \t\n.,;:!?\u2026\"'\u201c\u201d()-"
# A language needs this many of its own marker words to be named for a longer answer.
_LANGUAGE_HITS = 2
# A cue whose subject is someone else is theirs, not the person's: "I'd listen if she got
# worried" is no worry of the speaker's.
_OTHERS = frozenset(
    {"she", "he", "they", "she's", "he's", "they're", "she'd", "he'd", "they'd", "she'll",
     "he'll", "they'll", "her", "his", "their"}
)  # fmt: skip
_SELF = frozenset(
    {"i", "i'm", "i'd", "i've", "i'll", "me", "my", "myself", "we", "we're", "we'd", "our"}
)
# "My parents will worry", "Sam's afraid": the people a "my" names, and a name's "'s".
_PEOPLE = frozenset(
    {"wife", "husband", "partner", "mum", "mom", "mother", "dad", "father", "parents",
     "sister", "brother", "son", "daughter", "kids", "children", "friend", "friends", "boss",
     "manager", "family", "colleague", "colleagues", "team", "girlfriend", "boyfriend"}
)  # fmt: skip
_NOT_NAMES = frozenset({"it's", "that's", "what's", "there's", "here's", "who's", "let's"})
_CLAUSE = re.compile(r"[.,;:!?\n]")
# "I find it hard to say no" is no doubt: these say doubt only when they end their thought
# or ask something ("hard to say.", "I don't know if it's right").
_OPEN_ENDED = frozenset({"hard to say", "can't tell", "cannot tell", "don't know", "i don't know"})
_ASKING = frozenset(
    {"if", "whether", "what", "which", "who", "how", "why", "when", "where", "yet", "really",
     "about", "either", "anymore"}
)  # fmt: skip
# One soft hedge in an answer this long is a manner of speaking ("I'd check what my bank
# offers and maybe ask my sister"), not doubt; two of them, or a short answer, are.
_SOFT_HEDGES = ("maybe", "perhaps", "possibly", "i guess")
_SOFT_HEDGE_WORDS = 12


@dataclass(frozen=True)
class Reading:
    answer: str
    kind: Kind
    words: int
    cues: frozenset[str] = frozenset()  # the marker kinds found: "doubt", "worry", ...
    language: str = ""  # for a foreign answer: "German", "Spanish", ...
    yes_no: str = ""  # for a bare answer: "yes" or "no"

    @property
    def typed_english(self) -> bool:
        """Words this writer can read: English, not a bare yes or no."""
        return self.kind == "words"


def read(answer: str, common: Common) -> Reading:
    text = normal(answer)
    tokens = _WORD.findall(text)
    if not tokens:
        return Reading(answer, "wordless", 0)
    core = " ".join(text.split()).strip(_EDGES)
    for said, words in (("yes", common.yes), ("no", common.no)):
        if core in words:
            return Reading(answer, "bare", len(tokens), yes_no=said)
    language = _language(text, tokens, common)
    if language:
        return Reading(answer, "foreign", len(tokens), language=language)
    hidden = masked(text, common.masks)
    cues = {kind for kind, found in common.markers.items() if _any(hidden, found)}
    if "doubt" in cues and len(tokens) >= _SOFT_HEDGE_WORDS:
        hedges = [m for m in common.markers["doubt"] for _ in _own(hidden, m)]
        if len(hedges) == 1 and hedges[0] in _SOFT_HEDGES:
            cues.discard("doubt")
    return Reading(answer, "words", len(tokens), frozenset(cues))


def _any(text: str, markers: tuple[str, ...]) -> bool:
    return any(_own(text, marker) for marker in markers)


def _someone_elses(before: list[str]) -> bool:
    """Whether the nearest subject before a marker is someone other than the person."""
    for back, word in enumerate(reversed(before)):
        if word in _OTHERS:
            return True
        if word.endswith("'s") and word not in _NOT_NAMES and word not in _OTHERS and back == 0:
            return True  # "sam's afraid"
        if word in _SELF:
            following = before[len(before) - back :][:1]
            return word in ("my", "our") and bool(following) and following[0] in _PEOPLE
    return False


def _own(text: str, marker: str) -> list[int]:
    """Where the person says a marker of their own: not someone else's feeling, and an
    open-ended doubt only where it ends its thought or asks something."""
    found = []
    for start, end in spans(text, marker):
        if _someone_elses(_CLAUSE.split(text[:start])[-1].split()):
            continue
        if marker in _OPEN_ENDED:
            after = _CLAUSE.split(text[end:])[0].split()
            if after and after[0] not in _ASKING:
                continue
        found.append(start)
    return found


def _language(text: str, tokens: list[str], common: Common) -> str:
    """The language an answer is written in when it is clearly not English, else "".

    Counted by marker words (mostly short function words: "ich", "que", "je") against
    English ones; a one- or two-word answer may be named by a single distinctive word
    ("vielleicht", "quizás"), a longer one needs two, and English must not match as well.

    Libraries weighed and left out: langdetect (pure Python, but reads "idk" as Somali,
    "not sure" as French and "Je ne sais pas" as Lithuanian, is random unless seeded and
    loads its profiles from disk at the first call); py3langid ("no" as Afrikaans, "quizás"
    as Hungarian, and numpy); lingua (right on short text, but a 96 MB wheel). Answers here
    are short, and what matters is only "English or not, and which": a word list does that.
    """
    english = sum(token in common.english for token in tokens)
    best, best_hits = "", 0
    for name, words in common.languages.items():
        hits = sum(token in words for token in tokens)
        hits += sum(1 for phrase in words if " " in phrase and phrase in text)
        if hits > best_hits:
            best, best_hits = name, hits
    needed = 1 if len(tokens) <= 2 else _LANGUAGE_HITS
    if best_hits >= needed and best_hits > english:
        return best
    return ""


def paraphrased(answer: str, replies: tuple[Reply, ...], common: Common) -> Reply | None:
    """The one reply an answer says in other words, if any: it opens with the reply's first
    telling word ("Everything. I'd want to know…" for "Everything, even the hard parts"),
    or it holds all of the reply's telling words, or two and at least half of them ("I
    said yes before I saw the price, and I regret it" for "Yes, and I regret it"). When
    more than one reply fits, the answer is left to its own words. A word said with a
    negation on one side and without on the other is no match: "Doesn't bother me" does
    not say "It bothers me a lot"."""
    said = _telling(answer, common)
    if not said:
        return None
    turned = _negated(answer, common)
    fitting = []
    for reply in replies:
        words = set(_telling(reply.text, common))
        if not words:
            continue
        if (words & turned) != (words & set(said) & _negated(reply.text, common)):
            continue
        shared = len(words & set(said))
        opens_alike = _telling(reply.text, common)[0] == said[0]
        if opens_alike or shared == len(words) or (shared >= 2 and shared * 2 >= len(words)):
            fitting.append(reply)
    return fitting[0] if len(fitting) == 1 else None


def _negated(text: str, common: Common) -> set[str]:
    """The telling words (stemmed) that a negation before them turns around."""
    flat = normal(text)
    return {
        _stem(m.group())
        for m in _WORD.finditer(flat)
        if m.group() not in common.stopwords and negated(flat, m.start())
    }


def _telling(text: str, common: Common) -> list[str]:
    """The words that carry meaning, in order, lightly stemmed ("needs" is "need")."""
    words = _WORD.findall(normal(text))
    return [_stem(w) for w in words if w not in common.stopwords and w not in common.yes]


def _stem(word: str) -> str:
    for ending in ("ing", "ed", "es", "s"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            return word[: -len(ending)]
    return word
