"""How the offline writer reads and quotes answers: signal matching and clean excerpts."""

from __future__ import annotations

import re

from server.generators.bank import Dimension, normal

QUOTE_CHARS = 110

_NEGATORS = frozenset(
    {"not", "no", "never", "cannot", "hardly", "without", "nobody", "nothing", "neither", "nor"}
)
# Dislike and avoidance turn a signal around as a negation does ("I'd avoid the risk", "I
# hate gambling"); far from it they only cancel it ("I hate going to the doctor" says nothing
# of whether the person looks for information).
_AVERSE = frozenset(
    {
        "hate", "hates", "hated", "hating", "dread", "dreads", "dreaded", "dreading",
        "avoid", "avoids", "avoided", "avoiding", "dislike", "dislikes", "disliked",
        "refuse", "refuses", "refused", "refusing",
    }
)  # fmt: skip
# A verb and its particle match with a pronoun between them: "look it up" for "look up".
_PARTICLES = frozenset({"up", "out", "down", "through", "over", "back", "off", "around"})
_PARTICLE_OBJECTS = r"(?:it|them|this|that|things|stuff|everything|something|anything|all|him|her)"
# A hazard a thing is compared with says the thing is risky: "investing feels like
# gambling" leans low on risk, the reverse of "I'd gamble".
_HAZARDS = frozenset({"gamble", "gambling", "bet", "roll the dice", "all in", "risk it"})
_COMPARED = re.compile(
    r"(?:feels?|felt|seems?|seemed|looks?|looked|sounds?|sounded|is|was|are|it's|that's|"
    r"basically|just|more)\s+like\s+(?:a\s+|an\s+)?$"
)
_CLAUSE_END = re.compile(r"[.,;:!?\n]")
# Words that join two things rather than make one the object of the other.
_JOINING = frozenset({"and", "or", "but", "than", "nor", "versus", "vs"})
_LOWER_I = re.compile(r"(?<![\w'])i(?![\w])")
# A negation reaches this many words ahead ("I do not think there is a fair way")...
_NEGATION_REACH = 6
# ...but not past a word that starts a new thought ("I don't mind, and I'd go for it").
_SAYING = frozenset({"say", "says", "said", "saying"})
_DOUBT_AFTER_NEGATION = frozenset({"know", "sure", "certain"})
# A negation this close turns a signal around ("not brave", "never gamble", "don't want
# to invest"); further away it only cancels it ("I do not think there is a fair way").
_TURNING_REACH = 3
_NEGATION_STOPS = frozenset(
    {"and", "but", "so", "because", "although", "though", "yet", "while", "then", "which"}
)
_TRAILING = ".,;:!?\u2026-\u2013\u2014 "


def flat(text: str) -> str:
    """Normalised text with its spacing collapsed, for comparing an answer with a reply."""
    return " ".join(normal(text).split())


def negated(text: str, start: int) -> bool:
    """A negation among the few words before `start`, within the same clause and thought."""
    return negation_distance(text, start) is not None


def negation_distance(text: str, start: int) -> int | None:
    """How many words before `start` the negation stands (1 for "not brave"), or None.

    "don't know" and "not sure" are doubt, not negation: they negate nothing after them.
    """
    clause = _CLAUSE_END.split(text[:start])[-1].split()[-_NEGATION_REACH:]
    for distance, word in enumerate(reversed(clause), start=1):
        if word in _NEGATION_STOPS:
            return None
        if word in _NEGATORS or word in _AVERSE or word.endswith("n't"):
            before = clause[: len(clause) - distance][-1:]
            if word == "no" and before and before[0] in _SAYING:
                continue  # "I'd say no when I'm exhausted": a no said, not a negation
            following = clause[len(clause) - distance + 1 :][:1]
            if following and following[0] in _DOUBT_AFTER_NEGATION:
                return None
            return distance
    return None


# Words that open a concession: what follows is a circumstance the person goes ahead despite
# ("I'd tell her, even if it's awkward"), not how they lean.
_CONCESSIONS = re.compile(r"(?<!\w)(?:even if|even though|even when|despite|in spite of)(?!\w)")


def conceded(text: str, start: int) -> bool:
    """Whether the words at `start` stand in a concession within their clause."""
    return bool(_CONCESSIONS.search(_CLAUSE_END.split(text[:start])[-1]))


def masked(text: str, masks: tuple[str, ...]) -> str:
    """The text with look-alike phrases ("kind of", "to be fair") blanked out, so they match
    no signal; blanks of the same length keep every index pointing at the original."""
    for mask in masks:
        text = re.sub(rf"(?<!\w){re.escape(mask)}(?!\w)", lambda m: " " * len(m.group()), text)
    return text


def blank_prefix(text: str, phrase: str) -> str:
    """The text with `phrase` blanked where it opens it (spacing may differ), so the words
    of a quick reply typed as an answer's start are not read again as signals."""
    words = normal(phrase).split()
    found = re.match(r"\s*" + r"\s+".join(map(re.escape, words)), text) if words else None
    return " " * found.end() + text[found.end() :] if found else text


def spans(text: str, signal: str) -> list[tuple[int, int]]:
    """Where a (normalised) signal occurs in normalised text as whole words, not negated."""
    return [(start, end) for start, end, turned in _matches(text, signal) if not turned]


def _matches(text: str, signal: str) -> list[tuple[int, int, bool]]:
    """Every whole-word occurrence, with whether a close negation turns it around; one
    negated from further away is left out."""
    found = []
    # Not inside a longer word, nor before a contraction ("say it" is not in "say it's").
    for match in re.finditer(rf"(?<!\w){_pattern(signal)}(?![\w'])", text):
        if conceded(text, match.start()):
            continue
        distance = negation_distance(text, match.start())
        if distance is None or distance <= _TURNING_REACH:
            found.append((match.start(), match.end(), distance is not None))
    return found


def _pattern(signal: str) -> str:
    """A signal as a pattern: one word also in its plural ("routines" for "routine"; other
    forms are the bank's to list, since "protecting" or "protected" may not lean as the
    verb does), a verb and its particle with a pronoun between them ("look it up"),
    anything else word for word."""
    words = signal.split()
    if len(words) == 1 and signal.isalpha() and len(signal) >= 4:
        if signal.endswith("y") and signal[-2] not in "aeiou":
            return re.escape(signal[:-1]) + "(?:y|ies)"
        return re.escape(signal) + ("(?:s|es)?" if not signal.endswith("s") else "")
    if len(words) == 2 and words[1] in _PARTICLES:
        return rf"{re.escape(words[0])}(?:\s+{_PARTICLE_OBJECTS})?\s+{words[1]}"
    return re.escape(signal)


def mentions(text: str, signal: str) -> bool:
    return bool(spans(text, signal))


def signal_hits(text: str, dim: Dimension) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The high and low signals of one dimension found, in order of appearance."""
    return category_hits(text, [dim])[dim.label]


def category_hits(
    text: str, dims: list[Dimension]
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per dimension, the high and low signals found, in order of appearance.

    The longest match wins a span, across dimensions too: "future security" (long-term
    thinking) hides its "security" (risk tolerance), "change the plan" its "the plan". A
    signal turned around by a close negation or dislike counts the other way, shown with the
    words that turn it ("not brave" toward low Courage, "don't want to invest" toward low
    Risk tolerance).
    """
    result = {}
    for dim in dims:
        mine = [
            (signal, is_high)
            for _, _, label, signal, is_high in _taken(text, dims)
            if label == dim.label
        ]
        high = tuple(dict.fromkeys(signal for signal, is_high in mine if is_high))
        low = tuple(dict.fromkeys(signal for signal, is_high in mine if not is_high))
        result[dim.label] = (high, low)
    return result


def leaning_spans(text: str, dim: Dimension, *, high: bool) -> list[tuple[int, int]]:
    """Where the signals that lean one way on a dimension stand in the text."""
    return [(start, end) for start, end, _, _, is_high in _taken(text, [dim]) if is_high == high]


def _taken(text: str, dims: list[Dimension]) -> list[tuple[int, int, str, str, bool]]:
    """Every signal hit as (start, end, dimension, shown, leans high), longest first wins."""
    found = [
        (start, end, dim.label, _shown(text, start, end, signal, turned), high != turned)
        for dim in dims
        for high, signals in ((True, dim.signals_high), (False, dim.signals_low))
        for signal in signals
        for start, end, turned in _matches(text, signal)
    ]
    found.sort(key=lambda hit: (hit[0] - hit[1], hit[0]))
    taken: list[tuple[int, int, str, str, bool]] = []
    for hit in found:
        if not any(hit[0] < other[1] and other[0] < hit[1] for other in taken):
            taken.append(hit)
    taken.sort()
    return _compared(text, _governed(text, taken))


def _governed(
    text: str, taken: list[tuple[int, int, str, str, bool]]
) -> list[tuple[int, int, str, str, bool]]:
    """A signal that is the object of the one just before it, on the same dimension, leans
    as that one does: "give up on routines" is one low hit, not a low and a high."""
    result: list[tuple[int, int, str, str, bool]] = []
    for hit in taken:
        if result:
            start, end, label, shown, high = result[-1]
            between = text[end : hit[0]]
            if (
                label == hit[2]
                and high != hit[4]
                and len(between.split()) <= 2
                and not _CLAUSE_END.search(between)
                and not set(between.split()) & _JOINING
            ):
                said = " ".join(text[start : hit[1]].split())
                result[-1] = (start, hit[1], label, said if len(said) > len(shown) else shown, high)
                continue
        result.append(hit)
    return result


def _shown(text: str, start: int, end: int, signal: str, turned: bool) -> str:
    """How a hit is named: the words matched, and when a negation or a dislike turns them,
    the words from that one on ("not brave", "wouldn't decide the same day")."""
    if turned:
        back = negation_distance(text, start) or 1
        words = [*text[:start].split()[-back:], *text[start:end].split()]
    else:
        # The person's own words: "look it up" for "look up", "routines" for "routine".
        words = text[start:end].split()
    # Matched in lower case; "I" is shown as the person wrote it.
    return _LOWER_I.sub("I", " ".join(words))


def _compared(
    text: str, taken: list[tuple[int, int, str, str, bool]]
) -> list[tuple[int, int, str, str, bool]]:
    """A hazard a thing is compared with ("investing feels like gambling") turns low, and
    takes in the thing compared (the "investing" before it), shown as one hit."""
    result = list(taken)
    for start, end, label, shown, high in taken:
        # The words as matched, a plural too ("bets").
        if not high or (shown not in _HAZARDS and shown.removesuffix("s") not in _HAZARDS):
            continue
        found = _COMPARED.search(text[:start])
        if found is None:
            continue
        clause = _CLAUSE_END.split(text[: found.start()])[-1]
        begins = found.start() - len(clause)
        subjects = [h for h in result if h[2] == label and h[4] and begins <= h[0] < found.start()]
        first = min([found.start(), *(h[0] for h in subjects)])
        result = [h for h in result if h not in subjects]
        said = " ".join(text[first:end].split())
        result[result.index((start, end, label, shown, high))] = (first, end, label, said, False)
    return sorted(result)


# Where a long answer may be cut: after a whole sentence, else after a clause; never so early
# that the quote says less than a third of what fits.
_SENTENCE_CUT = re.compile(r"[.!?][\u201d\u2019\"')]*(?= )")
_CLAUSE_CUT = re.compile(r"[,;:\u2013\u2014](?= )")


def excerpt(text: str, limit: int = QUOTE_CHARS) -> str:
    """The text on one line; when it is long, its first whole sentences that fit (one may run a
    quarter over), else cut after a clause or a word with an ellipsis. A quote that stops mid-clause ("she would…")
    reads as if the person had trailed off."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    room = flat[: limit + 1]
    least = limit // 3
    sentences = [m.end() for m in _SENTENCE_CUT.finditer(room) if m.end() >= least]
    if sentences:
        return room[: sentences[-1]]
    # A sentence that ends a little past the limit is quoted whole rather than cut short.
    over = _SENTENCE_CUT.search(flat[: limit + limit // 4 + 1] + " ", limit)
    if over:
        return flat[: over.end()]
    clauses = [m.start() for m in _CLAUSE_CUT.finditer(room) if m.start() >= least]
    if clauses:
        return room[: clauses[-1]].rstrip(_TRAILING) + "\u2026"
    cut = room.rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return cut.rstrip(_TRAILING) + "\u2026"


def clause_around(answer: str, marker: str) -> str:
    """The sentence holding the marker, trimmed to start at it when the sentence is long."""
    flat = " ".join(answer.split())
    for sentence in re.split(r"(?<=[.!?])\s+", flat):
        found = spans(normal(sentence), marker)
        if not found:
            continue
        at = found[0][0]
        if len(sentence) > QUOTE_CHARS and at > 0:
            sentence = sentence[at:]
        # A question or exclamation keeps its mark; a full stop or comma is the template's job.
        cut = excerpt(sentence)
        return cut if cut.endswith("\u2026") else cut.rstrip(".,;:-\u2013\u2014 ") or cut
    return excerpt(flat)


_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")
# How much of a long sentence is kept before the words a quotation is about.
_LEAD_CHARS = 30


def excerpt_around(answer: str, places: list[tuple[int, int]], limit: int = QUOTE_CHARS) -> str:
    """The part of an answer that holds the given spans: the sentence with the most of them,
    whole when it is short, else cut around its first span with an ellipsis on each cut side.
    Without spans, the answer's start (as `excerpt`)."""
    sentences = [(m.start(), m.end()) for m in _SENTENCE.finditer(answer) if m.group().strip()]
    if not places or not sentences:
        return excerpt(answer, limit)
    # The sentence with the most of them, then the most words of them ("investing feels
    # like gambling" says more than "buffer").
    best = max(
        sentences,
        key=lambda s: (
            sum(s[0] <= p[0] < s[1] for p in places),
            sum(p[1] - p[0] for p in places if s[0] <= p[0] < s[1]),
        ),
    )
    inside = [p for p in places if best[0] <= p[0] < best[1]]
    start, end = best
    text = " ".join(answer[start:end].split())
    if len(text) <= limit:
        return text
    first = inside[0][0] if inside else start
    cut_start = max(start, first - _LEAD_CHARS)
    if cut_start > start:
        # Start on a word: move forward to just after a space.
        space = answer.find(" ", cut_start, first + 1)
        cut_start = space + 1 if space != -1 else cut_start
    window = " ".join(answer[cut_start:end].split())
    cut = excerpt(window, limit)
    return "\u2026" + cut if cut_start > start else cut


def fill(template: str, excerpt: str) -> str:
    return end_sentence(template.replace("<quote>", escape_md(excerpt)))


def quote(answer: str) -> str:
    """An answer quoted word for word (shortened only when long), safe inside Markdown."""
    return f"\u201c{escape_md(excerpt(answer))}\u201d"


_SENTENCE_END = re.compile(r"([.!?])([\u201d\u2019\"')]*)\.?$")


def end_sentence(text: str) -> str:
    """End with one full stop: a quote that already ends a sentence gets no second one."""
    text = text.rstrip()
    found = _SENTENCE_END.search(text)
    if found:
        return text[: found.end(2)]
    return text if text.endswith("\u2026") else text + "."


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def escape_md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)
