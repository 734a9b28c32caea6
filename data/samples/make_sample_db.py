"""Rebuild `sample.sqlite`, the small shop database every user can query with `sql_query`.

Deterministic (fixed seed), so rebuilding gives the same rows: `python data/samples/make_sample_db.py`.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, timedelta
from pathlib import Path

TARGET = Path(__file__).with_name("sample.sqlite")

FIRST = ["Ada", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luca",
         "Maya", "Noah", "Olga", "Priya", "Quentin", "Rosa", "Sven", "Tara"]
LAST = ["Lovelace", "Okafor", "Martin", "Ivanov", "Nilsson", "Haddad", "Hopper", "Tanaka", "García", "Weber"]
CITIES = [("Paris", "France"), ("Lyon", "France"), ("Berlin", "Germany"), ("Munich", "Germany"),
          ("Madrid", "Spain"), ("Lisbon", "Portugal"), ("Rome", "Italy"), ("London", "United Kingdom"),
          ("Dublin", "Ireland"), ("Oslo", "Norway")]
PRODUCTS = [
    ("Espresso beans 1 kg", "Coffee", 24.90), ("Filter coffee 500 g", "Coffee", 11.50),
    ("Decaf beans 500 g", "Coffee", 13.20), ("Green tea 100 g", "Tea", 7.80), ("Earl Grey 250 g", "Tea", 9.40),
    ("Chai mix 200 g", "Tea", 8.60), ("Ceramic mug", "Accessories", 12.00), ("Travel mug", "Accessories", 19.50),
    ("Hand grinder", "Equipment", 54.00), ("Pour-over kettle", "Equipment", 42.00),
    ("French press", "Equipment", 29.90), ("Paper filters (100)", "Accessories", 4.50),
    ("Milk frother", "Equipment", 34.00), ("Cocoa powder 250 g", "Chocolate", 6.90),
    ("Dark chocolate bar", "Chocolate", 3.20),
]
STATUSES = ["delivered"] * 7 + ["shipped"] * 2 + ["cancelled"]


def build(target: Path = TARGET) -> None:
    rng = random.Random(20240501)
    target.unlink(missing_ok=True)
    db = sqlite3.connect(target)
    db.executescript(
        """
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE,
            city TEXT NOT NULL, country TEXT NOT NULL, signup_date TEXT NOT NULL
        );
        CREATE TABLE products (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL
        );
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
            order_date TEXT NOT NULL, status TEXT NOT NULL
        );
        CREATE TABLE order_items (
            order_id INTEGER NOT NULL REFERENCES orders(id), product_id INTEGER NOT NULL REFERENCES products(id),
            quantity INTEGER NOT NULL, unit_price REAL NOT NULL, PRIMARY KEY (order_id, product_id)
        );
        CREATE INDEX orders_by_customer ON orders(customer_id);
        """
    )
    start = date(2024, 1, 1)
    customers = []
    for customer_id in range(1, 41):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, country = rng.choice(CITIES)
        email = f"{first.lower()}.{last.lower()}{customer_id}@example.com".replace("é", "e").replace("í", "i")
        signup = start + timedelta(days=rng.randrange(0, 180))
        customers.append((customer_id, f"{first} {last}", email, city, country, signup.isoformat()))
    db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", customers)
    db.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?)", [(i, *p) for i, p in enumerate(PRODUCTS, start=1)]
    )
    for order_id in range(1, 151):
        customer = rng.choice(customers)
        signup = date.fromisoformat(customer[5])
        ordered = signup + timedelta(days=rng.randrange(0, 200))
        db.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?)", (order_id, customer[0], ordered.isoformat(), rng.choice(STATUSES))
        )
        for product_id in rng.sample(range(1, len(PRODUCTS) + 1), rng.randint(1, 4)):
            price = PRODUCTS[product_id - 1][2]
            db.execute(
                "INSERT INTO order_items VALUES (?, ?, ?, ?)", (order_id, product_id, rng.randint(1, 3), price)
            )
    db.commit()
    db.execute("VACUUM")
    db.close()


if __name__ == "__main__":
    build()
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")
