"""Entities (noun phrases) and spatial relations between them, read from an English text-to-video prompt.

Rule-based on purpose: spaCy and NLTK need model/corpus downloads, which an offline machine cannot make,
and prompts are short, simple descriptions. The rules: split the words at prepositions, conjunctions,
verbs, adverbs and punctuation; what is left between splits is a noun phrase once its articles and
numbers are dropped, unless it is only adjectives or a camera/format word ("shot", "video"). A verb-like
word directly after an article or adjective is a modifier ("a running dog", "the swimming pool").
Known limits: no real part-of-speech tagging, so an unlisted verb joins the noun phrase before it, and
a relation attaches to the nearest clause-level noun phrase before it ("a cat on a mat next to a dog":
the cat, not the mat).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from dqa.score.errors import ScoreError

RELATIONS = ("left_of", "right_of", "above", "below", "on_top_of", "in_front_of", "behind", "next_to")
MAX_ENTITIES = 10  # each entity is one more text query per frame; long prompts keep their first ten

# Multi-word relation phrases, matched longest first. Bare "on" is left out on purpose: "on the wall",
# "on the beach", "on fire" are not a vertical relation; "on top of" is.
_REL_PHRASES = {
    "left_of": ["to the left of", "on the left of", "to the left side of", "on the left side of", "left of"],
    "right_of": ["to the right of", "on the right of", "to the right side of", "on the right side of", "right of"],
    "above": ["above", "over"],
    "below": ["below", "under", "underneath", "beneath"],
    "on_top_of": ["on top of", "atop"],
    "in_front_of": ["in front of"],
    "behind": ["behind"],
    "next_to": ["next to", "beside", "near", "close to", "alongside", "by the side of"],
}
_REL_TABLE = sorted(((tuple(p.split()), rel) for rel, ps in _REL_PHRASES.items() for p in ps),
                    key=lambda x: -len(x[0]))

_DETERMINERS = set("""a an the this these those that's my your his her its our their some any many several few
    multiple numerous various all every each both another other no one two three four five six seven eight nine
    ten eleven twelve dozen dozens hundreds thousands single pair""".split())
_PREPOSITIONS = set("""in on at of with without into onto from to through across along around toward towards
    against among amongst between during for by about inside outside within up down off out past via amid upon
    like throughout beyond underwater""".split())
_CONJUNCTIONS = set("""and or but nor while as then than so yet because when whenever where whereas whilst
    although though if until after before since""".split())
_PRONOUNS = set("""it they them he she him we us you i me who whom whose which that what there here itself
    himself herself themselves someone something somebody everyone everything nothing""".split())
_ADVERBS = set("""very too also just still now then again always never often sometimes almost quite rather
    really together away back forward forwards backward backwards ahead around slowly fast closely gently
    nearby far high low upward upwards downward downwards not only even soon later once twice""".split())
# Auxiliaries and verbs whose base form is rarely a noun in prompts.
_AUX = set("""is are was were be been being am has have had do does did can could will would should may might
    must shall gets get got become becomes became seems seem appears appear""".split())
# Verb stems; their -s, -ing and -ed forms (and irregular pasts below) are verbs unless an article or
# adjective comes right before them. Base forms that are common nouns (walk, run, fire...) only count
# when listed in _VERB_BASES too.
_VERB_STEMS = """walk run sit stand jump fly swim dance play eat drink ride drive chase hold carry look watch move
    turn roll spin fall rise climb float glide sail race crawl hop leap bounce wave smile laugh cry sing talk
    read write cook paint draw build open close throw catch kick hit push pull lift drop pour cut sleep rest lie
    lay wait hide appear disappear explode burn melt grow shine glow flow blow travel cross enter leave approach
    follow lead wander roam graze hunt bark meow hug kiss shake stir wash clean fight type browse surf skate ski
    perch hover soar dive splash drift sway flutter flap crash land take make give sniff feed rotate zoom pan tilt
    orbit emerge flicker sparkle twinkle erupt wag lick bite stretch yawn stare gaze point reach touch kneel bend
    lean jog sprint march stroll hike pose perform strum chat gallop trot slither prowl pounce peck nibble chew
    sip pick place put set show see meet greet celebrate decorate prepare bake fry grill serve slice chop dig
    mow sweep repair fix paddle row steer honk accelerate sit swing splash chase cuddle play rush dash speed
    pass hang sit rotate shoot film bloom blossom sprout crumble shatter ripple sparkle wiggle nod blink"""
_VERB_BASES = set("""sit eat chase hold carry move spin glide crawl hop leap bounce sing read write throw catch kick
    push pull lift pour sleep appear disappear explode melt grow shine enter approach follow wander roam graze
    meow stir browse hover soar flutter flap sniff feed rotate emerge flicker sparkle twinkle erupt wag lick
    stretch yawn stare gaze kneel perform strum gallop slither prowl pounce peck nibble chew sip greet celebrate
    decorate prepare bake fry serve slice chop dig mow sweep repair steer accelerate cuddle bloom blossom
    sprout crumble shatter wiggle nod blink walk run jump fly swim dance play ride drive crash""".split())
_IRREGULAR_PAST = set("""ran sat stood flew flown swam swum ate eaten drank drunk rode ridden drove driven held
    fell fallen rose risen threw thrown caught slept hid hidden grew grown shone blew blown took taken made gave
    given fed saw seen met led left dug put read wrote written drew drawn built sang sung began begun spun leapt
    knelt bent hung broke broken""".split())
# Nouns ending in -ing, -ly or -s that the suffix rules would otherwise misread.
_NOUN_ING = set("""building painting ceiling clothing king ring thing wing string spring swing sling evening
    morning wedding pudding dumpling sibling duckling seedling sapling earring railing icing stuffing lightning
    viking awning bedding offspring landing drawing setting lighting housing carving ceiling darling herring
    filling dressing sterling pudding inning ping bling""".split())
_NOUN_LY = set("""family butterfly dragonfly firefly lily jelly belly fly bully ally rally holly italy assembly
    supply reply anomaly monopoly melancholy""".split())
_ADJECTIVES = set("""red blue green yellow black white orange purple pink brown gray grey golden
    violet beige turquoise cyan magenta crimson navy teal maroon colorful colourful dark bright pale
    big small large tiny huge little tall short long wide narrow giant massive enormous miniature thick thin
    old young new ancient modern vintage retro fresh ripe
    beautiful pretty cute lovely ugly happy sad angry calm serene peaceful busy quiet noisy lonely cozy cosy
    fluffy furry shiny glossy sparkling smooth rough soft hard wet dry hot cold warm cool frozen icy snowy rainy
    sunny cloudy foggy misty windy stormy clear hazy dusty muddy sandy rocky grassy leafy wooden metallic
    transparent realistic surreal cinematic dramatic vibrant vivid detailed epic
    majestic elegant fancy futuristic magical mysterious spooky scary funny silly playful curious fast slow
    high low deep shallow empty full open closed flat striped spotted heavy wild tame
    lush dense sparse crowded abandoned ornate rustic tropical urban rural
    first second third last next same different whole entire real fake famous""".split())
_ADJ_SUFFIXES = ("ful", "ous", "less")
# Words that are as often nouns (gold, glass, stone, square, light ...) are not in the list: a phrase made
# only of listed adjectives is dropped, and "an orange" is the rare casualty.
# Head nouns that name the shot, not a thing in it: a phrase ending in one is not an entity.
_FILLERS = set("""video clip footage scene shot view image picture photo photograph frame camera style
    background foreground motion time lapse timelapse time-lapse close-up closeup angle perspective resolution
    quality 4k 8k hd hdr fps lighting atmosphere mood render rendering animation sequence moment distance side
    top bottom front left right middle center centre way direction speed day night daytime nighttime sunset
    sunrise dusk dawn morning evening afternoon today tonight group bunch couple lot lots number set variety
    kind type sort piece pieces amount mode version effect effects pov aerial drone-shot each other""".split())
_IRREGULAR_PLURAL = {"people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
                     "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox", "leaves": "leaf",
                     "wolves": "wolf", "knives": "knife", "wives": "wife", "lives": "life", "shelves": "shelf",
                     "loaves": "loaf", "calves": "calf", "halves": "half", "cacti": "cactus", "fungi": "fungus",
                     "buses": "bus", "thieves": "thief", "elves": "elf", "dice": "die", "policemen": "policeman",
                     "firemen": "fireman", "fishermen": "fisherman", "businessmen": "businessman",
                     "ladies": "lady", "babies": "baby", "puppies": "puppy", "kitties": "kitty"}
_IE_PLURAL = set("""cookies movies pies ties brownies zombies selfies smoothies rookies hoodies beanies birdies
    collies genies pixies veggies yorkies""".split())
_OES_PLURAL = set("shoes toes canoes hoes oboes floes tiptoes horseshoes".split())
_NOT_PLURAL = set("""news series species physics mathematics pants jeans shorts scissors binoculars trousers
    sunglasses glasses clothes stairs mars paris texas christmas canvas atlas gas lens chaos cosmos""".split())
# -ed words that are not past participles of a verb.
_NOUN_ED = set("""hundred sacred naked wicked rugged hatred kindred jagged ragged crooked beloved""".split())

_SENTENCE_END = {".", ";", "!", "?"}
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")


@dataclass(frozen=True)
class Entity:
    """A noun phrase: `text` as written (articles and numbers dropped), `query` with the head noun made
    singular (what the segmenter looks for), `head` the singular head noun."""

    text: str
    query: str
    head: str
    plural: bool = False


@dataclass(frozen=True)
class Relation:
    """`subject` and `object` index into the entities; `relation` is one of RELATIONS."""

    subject: int
    relation: str
    object: int


@dataclass(frozen=True)
class Parsed:
    entities: tuple[Entity, ...]
    relations: tuple[Relation, ...]


def singular(word: str) -> str:
    """The singular of a plural noun by rule (irregulars listed); other words come back unchanged."""
    if word in _IRREGULAR_PLURAL:
        return _IRREGULAR_PLURAL[word]
    if word in _NOT_PLURAL or len(word) <= 3 or word.endswith(("ss", "us", "is", "'s")) or not word.endswith("s"):
        return word
    if word in _IE_PLURAL or word in _OES_PLURAL:
        return word[:-1]
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "oes")):
        return word[:-2]
    return word[:-1]


def _verb_forms() -> set[str]:
    forms = set(_IRREGULAR_PAST) | _VERB_BASES
    for v in set(_VERB_STEMS.split()):
        stem_e = v[:-1] if v.endswith("e") and not v.endswith("ee") else v
        double = v + v[-1] if re.search(r"[^aeiou][aeiou][^aeiouwxy]$", v) else v  # run -> runn(ing)
        if v.endswith("y") and v[-2] not in "aeiou":
            forms |= {v[:-1] + "ies", v[:-1] + "ied", v + "ing"}
        elif v.endswith("ie"):
            forms |= {v + "s", v + "d", v[:-2] + "ying"}
        else:
            forms |= {v + ("es" if v.endswith(("s", "sh", "ch", "x", "z", "o")) else "s"),
                      stem_e + "ing", double + "ing", stem_e + "ed" if not v.endswith("e") else v + "d",
                      double + "ed"}
    return forms


_VERBS = _verb_forms()


def _is_adjective(w: str) -> bool:
    return w in _ADJECTIVES or (len(w) > 5 and w.endswith(_ADJ_SUFFIXES))


def _is_adverb(w: str) -> bool:
    return w in _ADVERBS or (w.endswith("ly") and len(w) > 4 and w not in _NOUN_LY)


def _is_verb(w: str) -> bool:
    if w in _AUX or w in _VERBS:
        return True
    if w.endswith("ing"):
        return len(w) > 5 and w not in _NOUN_ING
    # unlisted participles ("stacked", "parked"), but not -eed/-bed/-shed/-sled nouns ("speed", "seabed")
    return w.endswith("ed") and len(w) > 4 and not w.endswith(("eed", "bed", "shed", "sled")) and w not in _NOUN_ED


def _tokens(prompt: str) -> list[str]:
    text = prompt.lower().replace("\u2019", "'")
    out = []
    for t in _TOKEN.findall(text):
        if t.endswith("'s") and len(t) > 2:  # "the man's hat": the owner is its own phrase
            out += [t[:-2], ","]
        else:
            out.append(t)
    return out


def _phrase(words: list[str]) -> list[str]:
    """A chunk's noun phrase: leading articles/numbers dropped; empty when no noun is left."""
    i = 0
    while i < len(words) and (words[i] in _DETERMINERS or words[i].isdigit()):
        i += 1
    words = words[i:]
    if not words or all(_is_adjective(w) or w == "and" for w in words) or words[-1] in _FILLERS:
        return []
    if any(ch.isdigit() for ch in words[-1]) or not re.search(r"[a-z]", words[-1]):
        return []
    return words


def parse_prompt(prompt: str) -> Parsed:
    """Entities and relations of `prompt`; ScoreError("empty_prompt") / ScoreError("no_entities")."""
    if not prompt or not prompt.strip():
        raise ScoreError("empty_prompt", "the spatial score needs the prompt, and it is empty")
    toks = _tokens(prompt)
    # items: ("np", words, opener) | ("rel", name) | ("brk", word); opener is the kind of boundary before
    # the phrase: "start"/"conj" (clause level, can be a relation's subject) or "prep"/"verb"/"rel".
    items: list[tuple] = []
    chunk: list[str] = []
    opener = "start"

    def flush(next_opener: str) -> None:
        nonlocal chunk, opener
        words = _phrase(chunk)
        if words:
            items.append(("np", words, opener))
        chunk, opener = [], next_opener

    i = 0
    while i < len(toks):
        match = next(((p, r) for p, r in _REL_TABLE if tuple(toks[i:i + len(p)]) == p), None)
        if match is not None:
            flush("rel")
            items.append(("rel", match[1]))
            i += len(match[0])
            continue
        if tuple(toks[i:i + 2]) in (("each", "other"), ("one", "another")):
            flush("conj")
            items.append(("brk", "each_other"))
            i += 2
            continue
        w = toks[i]
        prev = chunk[-1] if chunk else None
        # right after an article, adjective or number, or first after a preposition, a verb-like word is a
        # modifier or a noun: "a running dog", "the swimming pool", "waves of ..." in "shot of waves"
        modifier_slot = (prev in _DETERMINERS or _is_adjective(prev) or prev.isdigit()) if prev is not None \
            else opener in ("prep", "rel")
        if w in ("and", "or") and chunk and all(_is_adjective(x) for x in _phrase_body(chunk)) \
                and _phrase_body(chunk) and i + 1 < len(toks) and _is_adjective(toks[i + 1]):
            chunk.append(w)  # "a black and white cat" stays one phrase
        elif w in _CONJUNCTIONS or w in _SENTENCE_END or w == "," or not re.search(r"[a-z0-9]", w):
            flush("conj")
            items.append(("brk", w))
        elif w in _PREPOSITIONS:
            flush("prep")
            items.append(("brk", w))
        elif w in _PRONOUNS or _is_adverb(w):
            flush("conj" if w in _PRONOUNS else "verb")
            items.append(("brk", w))
        elif _is_verb(w) and not modifier_slot:
            flush("verb")
            items.append(("brk", w))
        else:
            chunk.append(w)
        i += 1
    flush("conj")
    return _assemble(items)


def _phrase_body(chunk: list[str]) -> list[str]:
    return [w for w in chunk if w not in _DETERMINERS and not w.isdigit()]


def _assemble(items: list[tuple]) -> Parsed:
    entities: list[Entity] = []
    index: dict[str, int] = {}
    ent_at: dict[int, int] = {}  # item position -> entity index
    for pos, it in enumerate(items):
        if it[0] != "np":
            continue
        words = it[1]
        head = singular(words[-1])
        query = " ".join([*words[:-1], head])
        if query not in index:
            if len(entities) >= MAX_ENTITIES:
                continue
            index[query] = len(entities)
            entities.append(Entity(" ".join(words), query, head, head != words[-1]))
        ent_at[pos] = index[query]
    if not entities:
        raise ScoreError("no_entities", "the prompt names no object to look for (no noun phrase found)")

    relations: list[Relation] = []
    for pos, it in enumerate(items):
        if it[0] != "rel":
            continue
        subjects = _subjects(items, pos, ent_at)
        obj = _object(items, pos, ent_at)
        if obj is None and len(subjects) >= 2 and it[1] == "next_to" and _each_other(items, pos):
            subjects, obj = subjects[:1], subjects[1]  # "a cat and a dog next to each other"
        for s in subjects:
            r = Relation(s, it[1], obj) if obj is not None else None
            if r is not None and s != obj and r not in relations:
                relations.append(r)
    return Parsed(tuple(entities), tuple(relations))


def _subjects(items: list[tuple], pos: int, ent_at: dict[int, int]) -> list[int]:
    """The relation's subject: the nearest clause-level phrase before it in the sentence (the nearest
    phrase of any kind when there is none), plus phrases joined to it by "and"/"or"/","."""
    nearest, chosen = None, None
    for j in range(pos - 1, -1, -1):
        it = items[j]
        if it[0] == "brk" and it[1] in _SENTENCE_END:
            break
        if it[0] == "np" and j in ent_at:
            nearest = j if nearest is None else nearest
            if it[2] in ("start", "conj"):
                chosen = j
                break
    chosen = chosen if chosen is not None else nearest
    if chosen is None:
        return []
    out = [ent_at[chosen]]
    j = chosen
    while j >= 2 and items[j][2] == "conj" and items[j - 1][0] == "brk" and items[j - 1][1] in ("and", "or", ",") \
            and items[j - 2][0] == "np" and items[j - 2][2] in ("start", "conj") and j - 2 in ent_at:
        j -= 2
        out.insert(0, ent_at[j])
    return out


def _object(items: list[tuple], pos: int, ent_at: dict[int, int]) -> int | None:
    for j in range(pos + 1, len(items)):
        it = items[j]
        if it[0] == "rel" or (it[0] == "brk" and it[1] in _SENTENCE_END):
            return None
        if it[0] == "np" and j in ent_at:
            return ent_at[j]
    return None


def _each_other(items: list[tuple], pos: int) -> bool:
    return pos + 1 < len(items) and items[pos + 1] == ("brk", "each_other")
