import sqlite3

import pytest


@pytest.fixture
def hand_db(tmp_path):
    """A two-table database laid out as Spider's (<dir>/concerts/concerts.sqlite); returns the directory."""
    d = tmp_path / "dbs"
    (d / "concerts").mkdir(parents=True)
    con = sqlite3.connect(d / "concerts" / "concerts.sqlite")
    con.execute("CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)")
    con.execute("CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER, venue TEXT, side TEXT)")
    con.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)", [
        (1, "Joe Sharp", "United States", 52), (2, "Timbaland", "United States", 32),
        (3, "Justin Brown", "France", 29), (4, "Rose White", "California", 41), (5, "John Nizinik", "France", 43)])
    con.executemany("INSERT INTO concert VALUES (?, ?, ?, ?)", [
        (1, 1, "Stark Stadium", "Left"), (2, 1, "Glebe Park", "Right"), (3, 3, "Stark Stadium", "Left"),
        (4, 4, "Balmoor", "Center")])
    con.commit()
    con.close()
    return d


SCHEMA = {"singer": ["id", "name", "country", "age"], "concert": ["id", "singer_id", "venue", "side"]}
