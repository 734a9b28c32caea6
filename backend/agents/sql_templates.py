"""Plain-English questions about the sample shop database, as the SELECT that answers them.

A 135M model cannot write SQL reliably, so the argument guard tries these templates (checked against
the schema in `backend/tools/sql/sources.py`) before it falls back to whatever the model proposed.
Only the common shapes are covered; anything else is left to the model and the tool's own checks.
"""

from __future__ import annotations

import re

_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "twenty": 20}
_TABLES = {"customer": "customers", "product": "products", "order item": "order_items", "order_item": "order_items",
           "order": "orders", "categor": "products"}


def _count(word: str | None, default: int) -> int:
    if not word:
        return default
    return int(word) if word.isdigit() else _NUMBER_WORDS.get(word.lower(), default)


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_from_wording(question: str) -> str | None:
    """The SELECT for a recognised question about customers, products, orders or order items, else None."""
    text = " ".join(question.split())[:2000]
    lower = text.lower()
    if re.search(r"\b(what|which|show|list)\b.{0,40}\btables\b|\bschema\b", lower):
        return ".schema"
    top = re.search(r"\b(top|first|(\d+|one|two|three|four|five|six|seven|eight|nine|ten) most|most)\s*"
                    r"(\d+|one|two|three|four|five|six|seven|eight|nine|ten|twenty)?\s*(most\s+)?"
                    r"(expensive|cheapest|priciest)", lower)
    if "product" in lower and (top or re.search(r"\b(most expensive|cheapest)\b", lower)):
        digits = re.search(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|twenty)\b", lower)
        limit = _count(digits.group(1) if digits else None, 1)
        order = "ASC" if "cheapest" in lower else "DESC"
        return f"SELECT name, price FROM products ORDER BY price {order} LIMIT {limit}"
    if "product" in lower and (cost := re.search(r"\b(more|less|cheaper|higher|lower) than \$?(\d+(?:\.\d+)?)", lower)):
        sign = ">" if cost.group(1) in ("more", "higher") else "<"
        return f"SELECT name, price FROM products WHERE price {sign} {cost.group(2)} ORDER BY price DESC"
    if re.search(r"\b(average|mean|avg)\b.{0,30}\bprice\b", lower):
        if re.search(r"\b(per|by|for each|each)\s+category\b", lower):
            return "SELECT category, ROUND(AVG(price), 2) AS average_price FROM products GROUP BY category"
        return "SELECT ROUND(AVG(price), 2) AS average_price FROM products"
    if re.search(r"\b(median)\b.{0,30}\bprice\b", lower):
        return ("SELECT price AS median_price FROM products ORDER BY price "
                "LIMIT 1 OFFSET (SELECT (COUNT(*) - 1) / 2 FROM products)")
    if re.search(r"\bcategor(y|ies)\b", lower) and not re.search(r"\b(how many|count|number)\b", lower):
        return "SELECT DISTINCT category FROM products ORDER BY category"
    if re.search(r"\bwhich customer\b.{0,40}\bmost orders\b|\bcustomer with the most orders\b|\btop customer\b", lower):
        return ("SELECT c.name, COUNT(o.id) AS orders FROM customers c JOIN orders o ON o.customer_id = c.id "
                "GROUP BY c.id ORDER BY orders DESC, c.name LIMIT 1")
    if most := re.search(r"\bwhich (country|city)\b.{0,40}\bmost customers\b", lower):
        column = most.group(1)
        return (f"SELECT {column}, COUNT(*) AS customers FROM customers GROUP BY {column} "
                f"ORDER BY customers DESC, {column} LIMIT 1")
    if per := re.search(r"\bcustomers (per|by|in each) (country|city)\b", lower):
        column = per.group(2)
        return f"SELECT {column}, COUNT(*) AS customers FROM customers GROUP BY {column} ORDER BY customers DESC"
    if re.search(r"\b(total|sum of)\b.{0,20}\bquantity\b|\btotal number of order items\b", lower):
        return "SELECT SUM(quantity) AS total_quantity FROM order_items"
    status = re.search(r"\bstatus\s+(?:is\s+|of\s+)?['\"]?([a-z_]+)['\"]?", lower)
    if status and "order" in lower:
        return f"SELECT COUNT(*) AS orders FROM orders WHERE status = {_quoted(status.group(1))}"
    counted = re.search(r"\b(how many|count(?: the| all)?|number of|total number of)\s+(\w+(?: items?)?)", lower)
    if counted:
        table = next((name for key, name in _TABLES.items() if counted.group(2).startswith(key)), None)
        if table == "products" and "categor" in counted.group(2):
            return "SELECT COUNT(DISTINCT category) AS categories FROM products"
        if table:
            where = ""
            place = re.search(r"\b(?:in|from|live in|living in)\s+([A-Z][\w'-]+(?: [A-Z][\w'-]+)?)", text)
            if table == "customers" and place:
                name = _quoted(place.group(1))
                where = f" WHERE city = {name} OR country = {name}"
            return f"SELECT COUNT(*) AS {table} FROM {table}{where}"
    return None
