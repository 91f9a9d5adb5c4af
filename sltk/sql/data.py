"""A synthetic Spider-style text-to-SQL benchmark, generated offline from templates.

Each domain is a SQLite database with a parent table (artists, departments, airlines, ...)
and a child table that points at it (songs, students, flights, ...), filled with rows by a
seeded random generator. Questions come from templates that cover Spider's hardness levels
(WHERE, GROUP BY/HAVING, ORDER BY + LIMIT, joins, nesting, INTERSECT/UNION/EXCEPT); the
values they name are often not spelled as in the database: a prefix ("Cal" for
"California"), initials ("L" for "Left", "NY" for "New York"), another case ("rock") or a
plural ("lions"). Every question's gold query returns rows.

Each example (one JSON line) holds ``id``, ``db``, ``question``, ``query`` (the gold SQL,
with the database's values), ``surface_query`` (the same query with the values as the
question spells them: what a model that copies from the question can produce; the
generator trains on it) and ``hardness``. The domains are split so that the dev and test
databases are never seen in training.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from sltk.utils.errors import UserError
from sltk.utils.io import atomic_open, atomic_path

log = logging.getLogger("sltk")

FIRST = ["James", "Mary", "Robert", "Linda", "Michael", "Susan", "David", "Karen", "Carlos", "Aisha",
         "Wei", "Priya", "Olga", "Kenji", "Fatima", "Lucas", "Emma", "Noah", "Sofia", "Omar", "Hannah",
         "Diego", "Mei", "Ivan", "Grace", "Tariq", "Nina", "Pedro", "Leah", "Victor"]
LAST = ["Smith", "Garcia", "Chen", "Patel", "Kowalski", "Nakamura", "Okafor", "Silva", "Muller", "Rossi",
        "Dubois", "Ivanova", "Haddad", "Johansson", "Kim", "Novak", "Brown", "Lopez", "Singh", "Murphy"]
ADJ = ["Silent", "Golden", "Broken", "Electric", "Crimson", "Hidden", "Wild", "Frozen", "Lonely", "Bright",
       "Distant", "Sweet", "Midnight", "Velvet", "Paper", "Iron", "Summer", "Blue", "Rolling", "Little"]
NOUN = ["River", "Heart", "Road", "Garden", "Window", "Dream", "Fire", "Ocean", "Mountain", "Letter",
        "Shadow", "Light", "Train", "Bridge", "Storm", "Island", "Mirror", "Moon", "Forest", "City"]

ARTISTS = ["Miles Davis", "Aretha Franklin", "David Bowie", "Bob Marley", "Nina Simone", "Johnny Cash",
           "Freddie Mercury", "Billie Holiday", "Jimi Hendrix", "Ella Fitzgerald", "Prince", "Madonna",
           "Elton John", "Stevie Wonder", "Dolly Parton", "Kurt Cobain", "Bjork", "Shakira", "Adele",
           "Ravi Shankar", "Fela Kuti", "Celia Cruz", "Louis Armstrong", "Patti Smith"]
SONGS = ["Blue in Green", "Respect", "Heroes", "Redemption Song", "Feeling Good", "Hurt", "Bohemian Rhapsody",
         "Strange Fruit", "Little Wing", "Summertime", "Purple Rain", "Vogue", "Rocket Man", "Superstition",
         "Jolene", "Lithium", "Hyperballad", "Hips Dont Lie", "Rolling in the Deep", "So What", "Changes",
         "Ring of Fire", "Imagine This", "Water No Get Enemy", "Quimbara", "What a Wonderful World",
         "Because the Night", "Space Oddity", "Chain of Fools", "Get Up Stand Up", "Walk the Line",
         "Somebody to Love", "Angel Eyes", "Voodoo Child", "Dream a Little Dream", "Kiss", "Frozen",
         "Your Song", "Sir Duke", "Nine to Five", "Come as You Are", "Army of Me", "Waka Waka",
         "Hello", "Norwegian Wood", "Zombie", "Guantanamera", "Hello Dolly", "Gloria", "Fame"]

STATES = ["California", "Texas", "New York", "Florida", "Ohio", "Georgia", "Nevada", "Oregon", "Virginia",
          "Michigan", "New Jersey", "Arizona"]
COUNTRIES = ["United States", "United Kingdom", "Canada", "Brazil", "France", "Germany", "Japan", "Nigeria",
             "India", "Mexico", "South Korea", "Australia"]


@dataclass
class Column:
    name: str
    nl: str                       # how questions name it
    kind: str                     # text, cat, num, id, fk
    values: Sequence = ()         # cat: the values; num: (lo, hi)
    plural_ok: bool = False       # cat values that questions may name in the plural ("lions")


@dataclass
class Domain:
    db: str
    parent: str
    parent_nl: Tuple[str, str]    # singular, plural
    child: str
    child_nl: Tuple[str, str]
    p_name: Column
    p_cat: Column
    p_num: Column
    c_name: Column
    c_cat: Column
    c_num: Column
    fk: str
    p_names: Sequence[str] = ()   # entity names of the parent table (default: people)
    c_names: Sequence[str] = ()   # of the child table (default: "Adjective Noun")


def _people(n: int, rng: random.Random) -> List[str]:
    pool = [f"{f} {l}" for f in FIRST for l in LAST]
    rng.shuffle(pool)
    return pool[:n]


def _titles(n: int, rng: random.Random) -> List[str]:
    pool = [f"{a} {b}" for a in ADJ for b in NOUN]
    rng.shuffle(pool)
    return pool[:n]


DOMAINS: List[Domain] = [
    Domain("music_store", "artist", ("artist", "artists"), "song", ("song", "songs"),
           Column("name", "name", "text"), Column("country", "country", "cat", COUNTRIES),
           Column("debut_year", "debut year", "num", (1950, 2015)),
           Column("title", "title", "text"), Column("genre", "genre", "cat",
                                                   ["Rock", "Jazz", "Pop", "Blues", "Soul", "Hip Hop", "Reggae", "Folk"]),
           Column("length_seconds", "length in seconds", "num", (120, 480)), "artist_id",
           ARTISTS, SONGS),
    Domain("university", "department", ("department", "departments"), "student", ("student", "students"),
           Column("name", "name", "text"), Column("building", "building", "cat",
                                                  ["North Hall", "South Hall", "Science Center", "Main Library", "East Wing"]),
           Column("budget", "budget", "num", (100000, 900000)),
           Column("name", "name", "text"), Column("class_year", "class year", "cat",
                                                  ["Freshman", "Sophomore", "Junior", "Senior", "Graduate"]),
           Column("age", "age", "num", (17, 35)), "dept_id",
           ["Physics", "Chemistry", "History", "Mathematics", "Biology", "Economics", "Philosophy", "Linguistics",
            "Computer Science", "Music", "Geology", "Sociology"]),
    Domain("flights", "airline", ("airline", "airlines"), "flight", ("flight", "flights"),
           Column("name", "name", "text"), Column("country", "country", "cat", COUNTRIES),
           Column("fleet_size", "fleet size", "num", (10, 400)),
           Column("flight_number", "flight number", "text"), Column("origin", "origin", "cat", STATES),
           Column("distance", "distance", "num", (200, 5000)), "airline_id",
           ["Skyway", "Blue Horizon", "Polar Air", "Sunwing Express", "Coastal Jet", "Red Falcon", "Aurora Lines",
            "Pacific Star", "Atlas Air", "Condor Wings", "Silverbird", "Trans Meridian"],
           [f"{a}{n}" for a in ("SW", "BH", "PA", "CJ", "RF", "AL") for n in range(101, 113)]),
    Domain("clinic", "doctor", ("doctor", "doctors"), "patient", ("patient", "patients"),
           Column("name", "name", "text"), Column("specialty", "specialty", "cat",
                                                  ["Cardiology", "Neurology", "Orthopedics", "Pediatrics", "Dermatology",
                                                   "Oncology"]),
           Column("years_experience", "years of experience", "num", (1, 40)),
           Column("name", "name", "text"), Column("injury_side", "injury side", "cat", ["Left", "Right", "Both"]),
           Column("age", "age", "num", (1, 95)), "doctor_id"),
    Domain("library", "author", ("author", "authors"), "book", ("book", "books"),
           Column("name", "name", "text"), Column("nationality", "nationality", "cat", COUNTRIES),
           Column("birth_year", "birth year", "num", (1900, 1995)),
           Column("title", "title", "text"), Column("genre", "genre", "cat",
                                                    ["Mystery", "Romance", "Fantasy", "Biography", "Science Fiction",
                                                     "Poetry", "History"]),
           Column("pages", "number of pages", "num", (80, 900)), "author_id"),
    Domain("restaurant", "chef", ("chef", "chefs"), "dish", ("dish", "dishes"),
           Column("name", "name", "text"), Column("cuisine", "cuisine", "cat",
                                                  ["Italian", "Mexican", "Japanese", "Indian", "French", "Thai",
                                                   "Ethiopian"]),
           Column("age", "age", "num", (22, 70)),
           Column("name", "name", "text"), Column("course", "course", "cat",
                                                  ["Starter", "Main Course", "Dessert", "Side Dish", "Soup"]),
           Column("price", "price", "num", (4, 60)), "chef_id"),
    # dev
    Domain("zoo", "keeper", ("keeper", "keepers"), "animal", ("animal", "animals"),
           Column("name", "name", "text"), Column("shift", "shift", "cat", ["Morning", "Evening", "Night", "Weekend"]),
           Column("age", "age", "num", (20, 65)),
           Column("name", "name", "text"), Column("species", "species", "cat",
                                                  ["Lion", "Tiger", "Zebra", "Giraffe", "Penguin", "Elephant", "Otter"],
                                                  plural_ok=True),
           Column("weight", "weight", "num", (5, 5000)), "keeper_id"),
    Domain("car_dealer", "maker", ("maker", "makers"), "car", ("car", "cars"),
           Column("name", "name", "text"), Column("country", "country", "cat", COUNTRIES),
           Column("founded", "founding year", "num", (1890, 2010)),
           Column("model", "model", "text"), Column("body_style", "body style", "cat",
                                                    ["Sedan", "Hatchback", "Convertible", "Pickup", "Minivan", "Coupe"],
                                                    plural_ok=True),
           Column("price", "price", "num", (9000, 90000)), "maker_id",
           ["Vexa Motors", "Nordwagen", "Sakura Auto", "Leone", "Trident", "Halcyon", "Kestrel", "Montague",
            "Orion Cars", "Zephyr"]),
    # test
    Domain("hockey_league", "team", ("team", "teams"), "player", ("player", "players"),
           Column("name", "name", "text"), Column("state", "state", "cat", STATES),
           Column("founded", "founding year", "num", (1900, 2010)),
           Column("name", "name", "text"), Column("position", "position", "cat",
                                                  ["Left Wing", "Right Wing", "Center", "Goalie", "Defense"]),
           Column("salary", "salary", "num", (50000, 9000000)), "team_id",
           ["Ice Hawks", "Polar Bears", "Steel Wolves", "Harbor Kings", "Desert Storm", "Mountain Lions",
            "River Rats", "Thunder", "Blizzard", "Comets", "Titans", "Vipers"]),
    Domain("real_estate", "agent", ("agent", "agents"), "house", ("house", "houses"),
           Column("name", "name", "text"), Column("city", "city", "cat",
                                                  ["Boston", "Denver", "Seattle", "Chicago", "Austin", "Portland",
                                                   "San Diego", "Los Angeles"]),
           Column("experience", "years of experience", "num", (1, 35)),
           Column("address", "address", "text"), Column("style", "style", "cat",
                                                        ["Colonial", "Ranch", "Victorian", "Cottage", "Bungalow",
                                                         "Townhouse"], plural_ok=True),
           Column("price", "price", "num", (90000, 2000000)), "agent_id",
           (), [f"{n} {s}" for n in (12, 48, 77, 103, 250, 311, 402, 519, 624, 730)
                for s in ("Oak Street", "Maple Avenue", "Pine Road", "Elm Court", "Cedar Lane", "Birch Way")]),
    Domain("festival", "stage", ("stage", "stages"), "performance", ("performance", "performances"),
           Column("name", "name", "text"), Column("day", "day", "cat",
                                                  ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                                                   "Sunday"]),
           Column("capacity", "capacity", "num", (200, 20000)),
           Column("act", "act", "text"), Column("side", "side", "cat", ["Left", "Right", "Center"]),
           Column("duration", "duration", "num", (15, 180)), "stage_id",
           ["Main Stage", "Sunset Stage", "Forest Stage", "Dome", "Harbor Stage", "Tent One", "Tent Two",
            "Rooftop", "Lakeside", "Arena"], SONGS),
]

SPLITS = {"train": ["music_store", "university", "flights", "clinic", "library", "restaurant"],
          "dev": ["zoo", "car_dealer"],
          "test": ["hockey_league", "real_estate", "festival"]}


# ---- databases

def build_database(dom: Domain, path: Path, seed: int, n_parent: int = 12, n_child: int = 60) -> dict:
    """Create ``path`` (SQLite) for a domain and return its rows ({table: [dict]})."""
    rng = random.Random(f"{seed}-{dom.db}")
    pn = list(dom.p_names) if dom.p_names else _people(n_parent, rng)
    rng.shuffle(pn)
    pn = pn[:n_parent]
    cn = list(dom.c_names) if dom.c_names else (_people(n_child, rng) if dom.c_name.name == "name" and
                                               dom.child in ("student", "patient", "player", "animal") else
                                               _titles(n_child, rng))
    if dom.child == "animal":
        cn = [n.split()[0] for n in _people(200, rng)]
        cn = list(dict.fromkeys(cn))
    rng.shuffle(cn)
    cn = cn[:n_child]
    # a few parents get no children (for NOT IN questions)
    with_kids = list(range(1, len(pn) + 1))[: max(1, len(pn) - 2)]
    parents = [{"id": i + 1, dom.p_name.name: n, dom.p_cat.name: rng.choice(list(dom.p_cat.values)),
                dom.p_num.name: rng.randint(*dom.p_num.values)} for i, n in enumerate(pn)]
    children = [{"id": i + 1, dom.c_name.name: n, dom.fk: rng.choice(with_kids),
                 dom.c_cat.name: rng.choice(list(dom.c_cat.values)), dom.c_num.name: rng.randint(*dom.c_num.values)}
                for i, n in enumerate(cn)]
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        con.execute(f"CREATE TABLE {dom.parent} (id INTEGER PRIMARY KEY, {dom.p_name.name} TEXT, "
                    f"{dom.p_cat.name} TEXT, {dom.p_num.name} INTEGER)")
        con.execute(f"CREATE TABLE {dom.child} (id INTEGER PRIMARY KEY, {dom.c_name.name} TEXT, "
                    f"{dom.fk} INTEGER REFERENCES {dom.parent}(id), {dom.c_cat.name} TEXT, {dom.c_num.name} INTEGER)")
        for table, rows in ((dom.parent, parents), (dom.child, children)):
            cols = list(rows[0])
            con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                            [tuple(r[c] for c in cols) for r in rows])
        con.commit()
        con.close()
    return {dom.parent: parents, dom.child: children}


# ---- value mentions

def initials(value: str) -> str:
    words = value.split()
    return "".join(w[0] for w in words).upper() if len(words) > 1 else value[0].upper()


def mention(value: str, others: Sequence[str], rng: random.Random, plural_ok: bool = False) -> Tuple[str, str]:
    """How a question names ``value`` (one of a column's values ``others``): (surface, kind).
    Kinds: exact, case, prefix, initials, plural. A variant is used only when no other value of
    the column shares it, so that the question stays unambiguous."""
    others = [o for o in others if o != value]
    options = ["exact", "case", "case", "prefix", "prefix", "initials", "initials"]
    if plural_ok:
        options += ["plural", "plural"]
    for _ in range(8):
        kind = rng.choice(options)
        if kind == "exact":
            return value, kind
        if kind == "case":
            return (value.lower() if rng.random() < 0.8 else value.upper()), kind
        if kind == "prefix" and len(value) >= 5:
            k = rng.randint(3, min(len(value) - 1, 5))
            p = value[:k]
            if " " not in p and not any(o.lower().startswith(p.lower()) for o in others):
                return (p if rng.random() < 0.6 else p.lower()), kind
        if kind == "initials":
            i = initials(value)
            if not any(initials(o) == i for o in others):
                return i, kind
        if kind == "plural" and " " not in value:
            return value.lower() + ("es" if value.endswith(("s", "x", "ch", "sh")) else "s"), kind
    return value, "exact"


def name_mention(value: str, others: Sequence[str], rng: random.Random) -> Tuple[str, str]:
    """Entity names: exact, lower case, or the first word when no other name starts with it."""
    r = rng.random()
    first = value.split()[0]
    if r < 0.3 and " " in value and not any(o != value and o.split()[0] == first for o in others):
        return first, "prefix"
    if r < 0.6:
        return value.lower(), "case"
    return value, "exact"


# ---- templates
# Phrasing slots: {P}/{p} parent plural/singular, {C}/{c} child, {pn} {pc} {pu} parent name,
# category, number column phrases, {cn} {cc} {cu} the child's; {v} {w} values; {n} {m} {k} numbers;
# {e} an entity name. SQL slots: the same in upper case for identifiers, {V} {W} {E} values.

TEMPLATES: List[Tuple[List[str], str]] = [
    (["list the {pn} of all {P}", "what are the {pn}s of the {P}", "show every {p} {pn}"],
     "SELECT {PN} FROM {PT}"),
    (["how many {C} are there", "count the {C}", "what is the number of {C}"],
     "SELECT count(*) FROM {CT}"),
    (["which {P} have {pc} {v}", "list the {pn} of {P} whose {pc} is {v}", "show {P} with {pc} {v}"],
     "SELECT {PN} FROM {PT} WHERE {PC} = '{V}'"),
    (["show the {cn} of {C} with {cu} above {n}", "which {C} have a {cu} greater than {n}",
      "list {cn} of {C} whose {cu} is more than {n}"],
     "SELECT {CN} FROM {CT} WHERE {CU} > {N}"),
    (["what is the average {pu} of all {P}", "give the mean {pu} of the {P}"],
     "SELECT avg({PU}) FROM {PT}"),
    (["what is the largest {cu} of any {c}", "find the maximum {cu} among {C}"],
     "SELECT max({CU}) FROM {CT}"),
    (["how many {C} have {cc} {v}", "count the {C} whose {cc} is {v}", "number of {v} {C}"],
     "SELECT count(*) FROM {CT} WHERE {CC} = '{V}'"),
    # medium
    (["list the {pn} and {pu} of {P} whose {pc} is {v}", "show {pn} and {pu} of {P} with {pc} {v}"],
     "SELECT {PN} , {PU} FROM {PT} WHERE {PC} = '{V}'"),
    (["how many {C} are there for each {cc}", "count the {C} of every {cc}", "number of {C} per {cc}"],
     "SELECT {CC} , count(*) FROM {CT} GROUP BY {CC}"),
    (["what is the {cn} of the {c} with the highest {cu}", "which {c} has the largest {cu}",
      "give the {cn} of the {c} with the most {cu}"],
     "SELECT {CN} FROM {CT} ORDER BY {CU} DESC LIMIT 1"),
    (["list the {pn} of all {P} sorted by {pu}", "show {P} ordered by {pu} ascending"],
     "SELECT {PN} FROM {PT} ORDER BY {PU} ASC"),
    (["what are the {cn}s of the {C} of {p} {e}", "list {C} by {p} {e}", "show the {cn} of {C} of {e}"],
     "SELECT T1.{CN} FROM {CT} AS T1 JOIN {PT} AS T2 ON T1.{FK} = T2.id WHERE T2.{PN} = '{E}'"),
    (["which {C} have {cc} {v} and a {cu} below {n}", "list {cn} of {C} whose {cc} is {v} and {cu} is less than {n}"],
     "SELECT {CN} FROM {CT} WHERE {CC} = '{V}' AND {CU} < {N}"),
    (["what is the average {cu} for each {cc}", "show the mean {cu} per {cc}"],
     "SELECT {CC} , avg({CU}) FROM {CT} GROUP BY {CC}"),
    (["list the {cn} of {C} whose {cc} is {v} or {w}", "show {C} with {cc} {v} or {w}"],
     "SELECT {CN} FROM {CT} WHERE {CC} = '{V}' OR {CC} = '{W}'"),
    (["what are the three {C} with the lowest {cu}", "list the {cn} of the 3 {C} with the smallest {cu}"],
     "SELECT {CN} FROM {CT} ORDER BY {CU} ASC LIMIT 3"),
    (["show the {cn} of each {c} and the {pn} of its {p}", "list every {c} with the {pn} of its {p}"],
     "SELECT T1.{CN} , T2.{PN} FROM {CT} AS T1 JOIN {PT} AS T2 ON T1.{FK} = T2.id"),
    # hard
    (["which {P} have at least {k} {C}", "list the {pn} of {P} with {k} or more {C}"],
     "SELECT T2.{PN} FROM {CT} AS T1 JOIN {PT} AS T2 ON T1.{FK} = T2.id GROUP BY T1.{FK} HAVING count(*) >= {K}"),
    (["which {C} have a {cu} above the average", "list {cn} of {C} whose {cu} is higher than average"],
     "SELECT {CN} FROM {CT} WHERE {CU} > (SELECT avg({CU}) FROM {CT})"),
    (["which {P} have no {C}", "list the {pn} of {P} without any {C}"],
     "SELECT {PN} FROM {PT} WHERE id NOT IN (SELECT {FK} FROM {CT})"),
    (["which {pc} have more than {k} {P}", "list each {pc} with over {k} {P}"],
     "SELECT {PC} FROM {PT} GROUP BY {PC} HAVING count(*) > {K}"),
    (["what are the {pn}s of the three {P} with the most {C}", "top 3 {P} by number of {C}"],
     "SELECT T2.{PN} FROM {CT} AS T1 JOIN {PT} AS T2 ON T1.{FK} = T2.id GROUP BY T1.{FK} ORDER BY count(*) DESC LIMIT 3"),
    (["how many {C} belong to {P} with {pc} {v}", "count the {C} of {P} whose {pc} is {v}"],
     "SELECT count(*) FROM {CT} AS T1 JOIN {PT} AS T2 ON T1.{FK} = T2.id WHERE T2.{PC} = '{V}'"),
    (["list the {cn} of {C} whose {p} has {pc} {v}", "which {C} are from {P} with {pc} {v}"],
     "SELECT {CN} FROM {CT} WHERE {FK} IN (SELECT id FROM {PT} WHERE {PC} = '{V}')"),
    # extra
    (["which {pc} have both {P} with {pu} above {n} and {P} with {pu} below {m}",
      "list {pc} that have a {p} with {pu} over {n} and also one with {pu} under {m}"],
     "SELECT {PC} FROM {PT} WHERE {PU} > {N} INTERSECT SELECT {PC} FROM {PT} WHERE {PU} < {M}"),
    (["list the {pn} of {P} with {pc} {v} or with {pu} above {n}",
      "which {P} either have {pc} {v} or a {pu} over {n}"],
     "SELECT {PN} FROM {PT} WHERE {PC} = '{V}' UNION SELECT {PN} FROM {PT} WHERE {PU} > {N}"),
    (["list the {pn} of all {P} except those with {pc} {v}", "which {P} do not have {pc} {v}"],
     "SELECT {PN} FROM {PT} EXCEPT SELECT {PN} FROM {PT} WHERE {PC} = '{V}'"),
    (["which {cc} has the highest average {cu} among {C} of {P} with {pc} {v}",
      "for {P} with {pc} {v}, which {cc} of {C} has the largest mean {cu}"],
     "SELECT T1.{CC} FROM {CT} AS T1 JOIN {PT} AS T2 ON T1.{FK} = T2.id WHERE T2.{PC} = '{V}' "
     "GROUP BY T1.{CC} ORDER BY avg(T1.{CU}) DESC LIMIT 1"),
    (["which {P} have {C} with {cc} {v} and also {C} with {cc} {w}",
      "list the {pn} of {P} that have both {v} {C} and {w} {C}"],
     "SELECT T2.{PN} FROM {CT} AS T1 JOIN {PT} AS T2 ON T1.{FK} = T2.id WHERE T1.{CC} = '{V}' INTERSECT "
     "SELECT T2.{PN} FROM {CT} AS T1 JOIN {PT} AS T2 ON T1.{FK} = T2.id WHERE T1.{CC} = '{W}'"),
]


def _fill(dom: Domain, rows: dict, phr: str, sql: str, rng: random.Random) -> Optional[Tuple[str, str, str, list]]:
    P, C = rows[dom.parent], rows[dom.child]
    slots = {"P": dom.parent_nl[1], "p": dom.parent_nl[0], "C": dom.child_nl[1], "c": dom.child_nl[0],
             "pn": dom.p_name.nl, "pc": dom.p_cat.nl, "pu": dom.p_num.nl,
             "cn": dom.c_name.nl, "cc": dom.c_cat.nl, "cu": dom.c_num.nl}
    ids = {"PT": dom.parent, "CT": dom.child, "PN": dom.p_name.name, "PC": dom.p_cat.name, "PU": dom.p_num.name,
           "CN": dom.c_name.name, "CC": dom.c_cat.name, "CU": dom.c_num.name, "FK": dom.fk}
    kinds = []
    vals: Dict[str, str] = {}
    surf: Dict[str, str] = {}
    # which category column the {v} {w} slots refer to
    cat = dom.p_cat if "{PC} = '{V}'" in sql else dom.c_cat
    present = sorted({r[cat.name] for r in (P if cat is dom.p_cat else C)})
    if "{V}" in sql:
        v = rng.choice(present)
        vals["V"] = v
        surf["V"], k = mention(v, cat.values, rng, cat.plural_ok)
        kinds.append(k)
    if "{W}" in sql:
        rest = [x for x in present if x != vals["V"]]
        if not rest:
            return None
        w = rng.choice(rest)
        vals["W"] = w
        surf["W"], k = mention(w, cat.values, rng, cat.plural_ok)
        kinds.append(k)
    if "{E}" in sql:
        names = [r[dom.p_name.name] for r in P]
        e = rng.choice(names)
        vals["E"] = e
        surf["E"], k = name_mention(e, names, rng)
        kinds.append(k)
    nums = {}
    col = dom.p_num.name if "{PU} > {N}" in sql else dom.c_num.name
    pool = sorted(r[col] for r in (P if col == dom.p_num.name else C))
    if "{N}" in sql:
        nums["N"] = str(pool[rng.randint(len(pool) // 5, (4 * len(pool)) // 5)])
    if "{M}" in sql:
        nums["M"] = str(pool[rng.randint(len(pool) // 5, (4 * len(pool)) // 5)])
    if "{K}" in sql:
        nums["K"] = str(rng.randint(1, 4))
    q = phr.format(**slots, v=surf.get("V", ""), w=surf.get("W", ""), e=surf.get("E", ""),
                   n=nums.get("N", ""), m=nums.get("M", ""), k=nums.get("K", ""))
    fmt = dict(ids, N=nums.get("N", ""), M=nums.get("M", ""), K=nums.get("K", ""))
    gold = sql.format(**fmt, V=vals.get("V", ""), W=vals.get("W", ""), E=vals.get("E", ""))
    surface = sql.format(**fmt, V=surf.get("V", ""), W=surf.get("W", ""), E=surf.get("E", ""))
    return q, gold, surface, kinds


def generate_questions(dom: Domain, db_path: Path, rows: dict, n: int, seed: int, start_id: int = 0) -> List[dict]:
    """``n`` examples on one database, templates drawn uniformly; every gold query returns rows."""
    from sltk.sql.sqlparse import hardness

    rng = random.Random(f"{seed}-{dom.db}-questions")
    con = sqlite3.connect(db_path)
    out, seen, tries = [], set(), 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        phrasings, sql = rng.choice(TEMPLATES)
        res = _fill(dom, rows, rng.choice(phrasings), sql, rng)
        if res is None:
            continue
        q, gold, surface, kinds = res
        if (q, gold) in seen and tries < 10 * n:
            continue
        try:
            if not con.execute(gold).fetchall():
                continue
        except sqlite3.Error as e:  # a template bug
            raise RuntimeError(f"gold query fails on {dom.db}: {gold}: {e}") from None
        seen.add((q, gold))
        out.append({"id": f"{dom.db}-{start_id + len(out):05d}", "db": dom.db, "question": q, "query": gold,
                    "surface_query": surface, "hardness": hardness(gold), "mentions": kinds})
    con.close()
    return out


def make_benchmark(out_dir, per_db: Dict[str, int], seed: int = 0,
                   splits: Optional[Dict[str, List[str]]] = None) -> Dict[str, int]:
    """Write ``out_dir/databases/<db>/<db>.sqlite`` and ``out_dir/<split>.jsonl``; ``per_db``
    gives the questions per database of each split. Returns the number of examples per split."""
    out = Path(out_dir)
    splits = splits or SPLITS
    by_name = {d.db: d for d in DOMAINS}
    counts = {}
    for split, dbs in splits.items():
        if split not in per_db:
            raise UserError(f"no question count for split {split}")
        exs = []
        for db in dbs:
            if db not in by_name:
                raise UserError(f"unknown domain {db!r} (known: {', '.join(by_name)})")
            dom = by_name[db]
            path = out / "databases" / db / f"{db}.sqlite"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = build_database(dom, path, seed)
            exs += generate_questions(dom, path, rows, per_db[split], seed)
        with atomic_open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for e in exs:
                f.write(json.dumps(e) + "\n")
        counts[split] = len(exs)
        log.info("%s: %d questions on %s", split, len(exs), ", ".join(dbs))
    return counts


def read_examples(path) -> List[dict]:
    """Examples of a JSONL file (``question``, ``db`` and, for scoring, ``query``)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p} does not exist")
    out = []
    with open(p, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{p}:{i}: not valid JSON ({err.msg})") from None
            if not isinstance(e, dict) or "question" not in e or "db" not in e:
                raise UserError(f"{p}:{i}: each line needs 'question' and 'db'")
            out.append(e)
    if not out:
        raise UserError(f"{p} holds no examples")
    return out
