"""The safe way in for model-written maths: a token check, then SymPy's `parse_expr` against a whitelist.

`parse_expr` ends in `eval`, so text reaches it only after a token check that admits numbers,
whitelisted operators and plain names (no attribute access, strings, keywords or dunders), and it is
evaluated against a namespace holding only the whitelisted SymPy names and no builtins. Runs in the
maths worker process (`engine.py`), so it imports nothing from `backend`.
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from typing import Any

import sympy  # type: ignore[import-untyped]
from sympy.parsing.sympy_parser import (  # type: ignore[import-untyped]
    auto_number,
    auto_symbol,
    convert_xor,
    factorial_notation,
    function_exponentiation,
    implicit_application,
    implicit_multiplication,
    parse_expr,
    repeated_decimals,
)

# split_symbols is left out on purpose: it would read a variable called `rate` as r*a*t*e.
TRANSFORMATIONS = (
    auto_symbol, repeated_decimals, auto_number, factorial_notation,
    convert_xor, implicit_multiplication, implicit_application, function_exponentiation,
)

_FUNCTIONS = (  # noqa: SIM905 - a word list reads better than 90 quoted names
    "sin cos tan cot sec csc asin acos atan acot atan2 sinh cosh tanh coth asinh acosh atanh "
    "exp log sqrt cbrt root Abs sign floor ceiling factorial binomial gamma erf Min Max re im arg conjugate "
    "gcd lcm Mod isprime prime diff integrate limit series simplify expand factor solve N nsimplify "
    "apart together cancel trigsimp expand_trig summation product Sum Product Integral Derivative Limit "
    "Eq Ne Lt Le Gt Ge Matrix zeros ones eye det trace transpose Rational Integer Float Symbol Function Piecewise"
).split()

SAFE_GLOBALS: dict[str, Any] = {name: getattr(sympy, name) for name in _FUNCTIONS}
SAFE_GLOBALS.update(
    {
        "__builtins__": {},  # without this, eval would hand the expression Python's builtins
        "pi": sympy.pi, "E": sympy.E, "e": sympy.E, "I": sympy.I, "oo": sympy.oo, "inf": sympy.oo,
        "infinity": sympy.oo, "ln": sympy.log, "abs": sympy.Abs, "arcsin": sympy.asin, "arccos": sympy.acos,
        "arctan": sympy.atan, "sum": sympy.summation,
    }
)
ALLOWED_OPERATORS = {
    "+", "-", "*", "/", "**", "^", "(", ")", "[", "]", ",", "=", "==", "<", ">", "<=", ">=", "!=", "!", "%",
}
MAX_NAME_LENGTH = 32


class MathError(ValueError):
    """Input the engine refuses or cannot compute; the message is for the user."""


def check_tokens(text: str) -> None:
    """Refuse anything but numbers, whitelisted operators and plain names before `parse_expr` sees it."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError) as error:
        raise MathError(f"cannot read the expression: {error}") from None
    for token in tokens:
        kind, value = token.type, token.string
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT):
            continue
        if kind == tokenize.NUMBER:
            if value.lower().endswith("j"):
                raise MathError("write imaginary numbers with I, e.g. 3*I")
            continue
        if kind == tokenize.NAME:
            if value.startswith("_") or keyword.iskeyword(value) or len(value) > MAX_NAME_LENGTH:
                raise MathError(f"'{value}' is not allowed in an expression")
            continue
        if kind in (tokenize.OP, tokenize.ERRORTOKEN) and value in ALLOWED_OPERATORS:
            continue
        if kind == tokenize.ERRORTOKEN and not value.strip():
            continue
        raise MathError(f"'{value}' is not allowed in an expression")


_SPELLINGS = (
    ("×", "*"), ("·", "*"), ("÷", "/"), ("−", "-"),  # noqa: RUF001 - the look-alikes users type are the point
    ("²", "^2"), ("³", "^3"), ("π", "pi"), ("∞", "oo"),
)


def normalise(text: str) -> str:
    """Typographic symbols and `a mod b` into the syntax the parser reads."""
    for written, meant in _SPELLINGS:
        text = text.replace(written, meant)
    return re.sub(r"\s+mod\s+", " % ", text, flags=re.I)


def parse(text: str) -> Any:
    text = normalise(text).strip()
    if not text:
        raise MathError("empty expression")
    check_tokens(text)
    try:
        # A fresh local dict each time: auto_symbol records names in it.
        return parse_expr(text, local_dict={}, global_dict=dict(SAFE_GLOBALS), transformations=TRANSFORMATIONS)
    except MathError:
        raise
    except (SyntaxError, TypeError, ValueError, AttributeError, tokenize.TokenError) as error:
        raise MathError(f"cannot parse '{text}': {error}") from None


def split_top_level(text: str, separators: tuple[str, ...]) -> list[str]:
    """Split on separators that sit outside parentheses and brackets."""
    parts, depth, start, index = [], 0, 0, 0
    while index < len(text):
        char = text[index]
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif depth == 0:
            for separator in separators:
                if text.startswith(separator, index):
                    parts.append(text[start:index])
                    index += len(separator)
                    start = index
                    break
            else:
                index += 1
                continue
            continue
        index += 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


EQUALS = re.compile(r"(?<![<>!=])==?(?!=)")


def parse_equation(text: str) -> Any:
    """`a = b` (or `a == b`) becomes `a - b`, to be solved for zero; relations like `x < 3` stay relations."""
    sides = EQUALS.split(text)
    if len(sides) == 1:
        return parse(text)
    if len(sides) != 2 or not sides[0].strip() or not sides[1].strip():
        raise MathError(f"cannot read the equation '{text}'")
    return parse(sides[0]) - parse(sides[1])


def symbol(name: str) -> sympy.Symbol:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", name):
        raise MathError(f"'{name}' is not a variable name")
    return sympy.Symbol(name)


def pick_variable(expr: Any, what: str) -> sympy.Symbol:
    """The variable when the text names none: the only one, else x, else ask."""
    free = sorted(expr.free_symbols, key=lambda s: s.name)
    if len(free) == 1:
        return free[0]
    for preferred in ("x", "t", "z"):
        for candidate in free:
            if candidate.name == preferred:
                return candidate
    if not free:
        return sympy.Symbol("x")
    names = ", ".join(s.name for s in free)
    raise MathError(f"say which variable to {what} with respect to (found {names})")


def parse_point(text: str) -> tuple[Any, str]:
    """A limit or series point, with its side: '0+', '0 from the left', 'infinity'."""
    text = text.strip().rstrip(".")
    direction = "+-"
    side = re.search(r"\s*(?:\^?\+|from\s+the\s+right|from\s+above)$", text, re.I)
    if side and text not in ("+",):
        direction, text = "+", text[: side.start()]
    else:
        side = re.search(r"\s*(?:\^?-|from\s+the\s+left|from\s+below)$", text, re.I)
        if side and side.start() > 0:
            direction, text = "-", text[: side.start()]
    text = text.replace("∞", "oo")
    return parse(text), direction
