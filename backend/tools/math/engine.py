"""SymPy behind a safe parser: plain-language maths in, exact results out.

Runs inside a worker process (`main()` speaks JSON lines on stdin/stdout) that the server can kill
when a computation runs away. The worker is started with `python -I` and the repository root on its
path, so it imports its parser (`parsing.py`) and nothing else of `backend`: no settings, no secrets.
"""

from __future__ import annotations

import json
import re
import resource
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import sympy  # type: ignore[import-untyped]

from backend.tools.math.parsing import (
    EQUALS,
    MathError,
    parse,
    parse_equation,
    parse_point,
    pick_variable,
    split_top_level,
    symbol,
)

OPERATIONS = (
    "auto", "evaluate", "simplify", "expand", "factor", "solve",
    "differentiate", "integrate", "limit", "series", "numeric",
)
MAX_SERIES_ORDER = 30
MAX_DERIVATIVE_ORDER = 20


@dataclass
class MathResult:
    operation: str
    input: str
    result: str
    latex: str
    numeric: str | None = None
    solutions: list[dict[str, str]] | None = None
    notes: list[str] = field(default_factory=list)


# --- operations ------------------------------------------------------------------------------------

_VARIABLE_SUFFIX = re.compile(
    r"^(?P<rest>.+?)\s*,?\s+(?:(?:with\s+respect\s+to|wrt|w\.r\.t\.?)\s+(?P<v1>[A-Za-z]\w*)|d(?P<v2>[A-Za-z]))\s*$",
    re.I | re.S,
)


def take_variable(text: str) -> tuple[str, str | None]:
    """Strip a trailing 'dx', 'with respect to x' or 'wrt x'."""
    match = _VARIABLE_SUFFIX.match(text)
    if not match:
        return text, None
    return match["rest"], match["v1"] or match["v2"]


def _result(operation: str, shown: Any, value: Any, **extra: Any) -> MathResult:
    numeric = None
    if getattr(value, "is_number", False) and not getattr(value, "is_Integer", False):
        try:
            approx = sympy.N(value, 15)
            if approx.is_number and approx != value:
                numeric = str(approx)
        except (TypeError, ValueError):
            numeric = None
    if value == sympy.zoo:
        extra.setdefault("notes", []).append("zoo is complex infinity, e.g. the result of dividing by zero")
    return MathResult(
        operation=operation, input=str(shown), result=str(value), latex=sympy.latex(value), numeric=numeric, **extra
    )


def do_integrate(body: str) -> MathResult:
    bounds = re.match(r"^(?P<expr>.+?)\s+(?:from|between)\s+(?P<a>.+?)\s+(?:to|and)\s+(?P<b>.+)$", body, re.I | re.S)
    expr_text, lower, upper = (bounds["expr"], bounds["a"], bounds["b"]) if bounds else (body, None, None)
    expr_text, var_name = take_variable(expr_text)
    if upper is not None:
        upper, late_var = take_variable(upper)
        var_name = var_name or late_var
    expr = parse(expr_text)
    var = symbol(var_name) if var_name else pick_variable(expr, "integrate")
    if lower is None or upper is None:
        integral = sympy.Integral(expr, var)
        return _result("integrate", integral, sympy.integrate(expr, var), notes=["constant of integration omitted"])
    a, b = parse(lower), parse(upper)
    integral = sympy.Integral(expr, (var, a, b))
    return _result("integrate", integral, sympy.integrate(expr, (var, a, b)))


_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5}


def do_differentiate(body: str, order: int = 1, var_name: str | None = None) -> MathResult:
    at = re.match(r"^(?P<expr>.+?)\s+at\s+(?P<v>[A-Za-z]\w*)\s*=\s*(?P<p>.+)$", body, re.I | re.S)
    point = None
    if at:
        body, point = at["expr"], (at["v"], at["p"])
    body, named = take_variable(body)
    expr = parse(body)
    chosen = var_name or named
    var = symbol(chosen) if chosen else pick_variable(expr, "differentiate")
    if not 1 <= order <= MAX_DERIVATIVE_ORDER:
        raise MathError(f"the order of a derivative must be between 1 and {MAX_DERIVATIVE_ORDER}")
    derivative = sympy.diff(expr, var, order)
    shown = sympy.Derivative(expr, (var, order))
    if point is None:
        return _result("differentiate", shown, derivative)
    value = derivative.subs(symbol(point[0]), parse(point[1]))
    return _result("differentiate", f"{shown} at {point[0]} = {point[1]}", sympy.simplify(value))


def do_solve(body: str, variables: list[str] | None = None) -> MathResult:
    texts = split_top_level(body, (";", ",", " and "))
    equations = [parse_equation(text) for text in texts]
    symbols = [symbol(name) for name in variables] if variables else None
    if len(equations) == 1 and isinstance(equations[0], sympy.core.relational.Relational) and not isinstance(
        equations[0], (sympy.Eq, sympy.Ne)
    ):
        relation = equations[0]
        var = symbols[0] if symbols else pick_variable(relation, "solve")
        solved = sympy.solve(relation, var)
        return _result("solve", relation, solved)
    targets = symbols or sorted(set().union(*(e.free_symbols for e in equations)), key=lambda s: s.name)
    if not targets:
        truth = all(sympy.simplify(e) == 0 for e in equations)
        return MathResult("solve", str(equations), "true" if truth else "false", "", solutions=[])
    solutions = sympy.solve(equations, targets, dict=True)
    shown = [sympy.Eq(e, 0) for e in equations]
    if not solutions:
        return MathResult("solve", str(shown), "no solution", r"\emptyset", solutions=[])
    readable = [{str(k): str(v) for k, v in solution.items()} for solution in solutions]
    text = " or ".join(", ".join(f"{k} = {v}" for k, v in solution.items()) for solution in readable)
    latex = r" \lor ".join(
        ", ".join(f"{sympy.latex(k)} = {sympy.latex(v)}" for k, v in solution.items()) for solution in solutions
    )
    return MathResult("solve", str(shown), text, latex, solutions=readable)


def do_limit(body: str) -> MathResult:
    match = re.match(
        r"^(?P<expr>.+?)\s+as\s+(?P<var>[A-Za-z]\w*)\s*(?:->|→|approaches|tends\s+to|goes\s+to|to)\s*(?P<point>.+)$",
        body, re.I | re.S,
    ) or re.match(
        r"^\{?\s*(?P<var>[A-Za-z]\w*)\s*(?:->|→|to)\s*(?P<point>[^\s}]+)\s*\}?\s+(?P<expr>.+)$", body, re.I | re.S
    )
    if not match:
        raise MathError("write a limit as 'limit EXPR as x -> POINT', e.g. 'limit sin(x)/x as x->0'")
    expr, var = parse(match["expr"]), symbol(match["var"])
    point, direction = parse_point(match["point"])
    if point.is_infinite:
        direction = "+"  # SymPy approaches an infinite point from its own side
    value = sympy.limit(expr, var, point, dir=direction)
    side = "" if direction == "+-" else direction
    shown = f"Limit({expr}, {var}, {point}{side})"
    if direction == "+-" and value in (sympy.zoo, sympy.nan):
        left, right = sympy.limit(expr, var, point, dir="-"), sympy.limit(expr, var, point, dir="+")
        if left != right:
            return MathResult(
                "limit", shown, "does not exist", r"\text{does not exist}",
                notes=[f"from the left: {left}", f"from the right: {right}"],
            )
    return _result("limit", shown, value)


def do_series(body: str) -> MathResult:
    order, point_text, var_name = 6, None, None
    while True:
        order_match = re.match(
            r"^(?P<rest>.+?)\s+(?:(?:to|up\s+to)\s+order\s+(?P<n>\d+)|to\s+(?P<terms>\d+)\s+terms)$", body, re.I | re.S
        )
        if order_match:
            order = int(order_match["n"] or order_match["terms"])
            body = order_match["rest"]
            continue
        at_match = re.match(
            r"^(?P<rest>.+?)\s+(?:around|about|at|near)\s+(?:(?P<var>[A-Za-z]\w*)\s*=\s*)?(?P<point>\S+)$",
            body, re.I | re.S,
        )
        if at_match:
            point_text, var_name, body = at_match["point"], at_match["var"] or var_name, at_match["rest"]
            continue
        break
    if not 1 <= order <= MAX_SERIES_ORDER:
        raise MathError(f"the order of a series must be between 1 and {MAX_SERIES_ORDER}")
    body, named = take_variable(body)
    expr = parse(body)
    chosen = var_name or named
    var = symbol(chosen) if chosen else pick_variable(expr, "expand in a series")
    point = parse(point_text) if point_text else sympy.Integer(0)
    value = sympy.series(expr, var, point, order)
    return _result("series", f"series({expr}, {var}, {point}, {order})", value)


def do_simple(operation: str, body: str) -> MathResult:
    expr = parse(body)
    function = {"simplify": sympy.simplify, "expand": sympy.expand, "factor": sympy.factor}[operation]
    return _result(operation, expr, function(expr))


def do_numeric(body: str, digits: int = 15) -> MathResult:
    if not 1 <= digits <= 1000:
        raise MathError("digits must be between 1 and 1000")
    expr = parse(body)
    value = sympy.N(_done(expr), digits)
    return MathResult("numeric", str(expr), str(value), sympy.latex(value))


def _done(expr: Any) -> Any:
    """Carry out unevaluated objects (Integral(...), Derivative(...)) the text asked for by name."""
    return expr.doit() if hasattr(expr, "doit") else expr


def do_evaluate(body: str) -> MathResult:
    if len(EQUALS.split(body)) == 2 or len(split_top_level(body, (";",))) > 1:
        return do_solve(body)
    expr = _done(parse(body))
    if isinstance(expr, (list, tuple)):
        return MathResult("evaluate", body, str(expr), sympy.latex(expr))
    if isinstance(expr, sympy.Basic) and expr.free_symbols and not isinstance(expr, sympy.core.relational.Relational):
        value = sympy.simplify(expr)
        return _result("simplify" if value != expr else "evaluate", expr, value)
    return _result("evaluate", body, expr)


# --- plain language --------------------------------------------------------------------------------

_LEAD = re.compile(
    r"^(?:please\s+)?(?:(?:what\s+is|what's|compute|calculate|find|work\s+out|determine|give\s+me)\s+)?(?:the\s+)?",
    re.I,
)
_INTEGRATE = re.compile(
    r"^(?:definite\s+|indefinite\s+)?(?:integrate|integral|antiderivative)(?:\s+of)?\s+(?P<body>.+)$", re.I | re.S
)
_DERIVATIVE = re.compile(
    r"^(?:(?P<order>first|second|third|fourth|fifth|\d+)(?:st|nd|rd|th)?\s+)?"
    r"(?:derivative|differentiate|diff)(?:\s+of)?\s+(?P<body>.+)$",
    re.I | re.S,
)
_DDX = re.compile(r"^d(?:\^?(?P<n>\d))?/d(?P<var>[A-Za-z])(?:\^?\d)?\s*(?P<body>.+)$", re.S)
_SOLVE = re.compile(
    r"^solve(?:\s+the\s+system(?:\s+of\s+equations)?)?\s*:?\s+(?P<body>.+?)"
    r"(?:\s+for\s+(?P<vars>[A-Za-z]\w*(?:\s*(?:,|and)\s*[A-Za-z]\w*)*))?$",
    re.I | re.S,
)
_LIMIT = re.compile(r"^(?:limit|lim)(?:\s+of)?\s*(?P<body>.+)$", re.I | re.S)
_SERIES = re.compile(
    r"^(?:(?:taylor|maclaurin|power)\s+)?series(?:\s+expansion)?(?:\s+of)?\s+(?P<body>.+)$", re.I | re.S
)
_SIMPLE = re.compile(r"^(?P<op>simplify|expand|factor|factorise|factorize)\s+(?P<body>.+)$", re.I | re.S)
_SIMPLE_OPS = {
    "simplify": "simplify", "expand": "expand", "factor": "factor", "factorise": "factor", "factorize": "factor",
}
_NUMERIC = re.compile(
    r"^(?:numeric(?:al(?:ly)?)?(?:\s+value)?|approximate(?:ly)?|approx|decimal(?:\s+value)?|evaluate\s+numerically)"
    r"(?:\s+of)?\s+(?P<body>.+?)(?:\s+(?:to|with)\s+(?P<digits>\d+)\s+(?:significant\s+)?digits)?$",
    re.I | re.S,
)
_EVALUATE = re.compile(r"^(?:evaluate|eval)\s+(?P<body>.+)$", re.I | re.S)


def _variables(text: str | None) -> list[str] | None:
    return re.split(r"\s*(?:,|and)\s*", text.strip()) if text else None


def _order(word: str | None) -> int:
    if not word:
        return 1
    return _ORDINALS.get(word.lower()) or int(word)


def compute(text: str, operation: str = "auto") -> MathResult:
    """Route the text to one operation, by the explicit `operation` or by its leading words."""
    if operation not in OPERATIONS:
        raise MathError(f"unknown operation '{operation}'; use one of {', '.join(OPERATIONS)}")
    text = text.strip().rstrip("?").strip()
    if not text:
        raise MathError("empty expression")
    text = _LEAD.sub("", text, count=1).strip() if operation == "auto" else text
    wanted = operation

    def matched(pattern: re.Pattern[str], name: str) -> re.Match[str] | None:
        if wanted not in ("auto", name):
            return None
        return pattern.match(text)

    if m := matched(_INTEGRATE, "integrate"):
        return do_integrate(m["body"])
    if m := matched(_DDX, "differentiate"):
        return do_differentiate(m["body"], _order(m["n"]), m["var"])
    if m := matched(_DERIVATIVE, "differentiate"):
        return do_differentiate(m["body"], _order(m["order"]))
    if m := matched(_SOLVE, "solve"):
        return do_solve(m["body"], _variables(m["vars"]))
    if m := matched(_LIMIT, "limit"):
        return do_limit(m["body"])
    if m := matched(_SERIES, "series"):
        return do_series(m["body"])
    if (m := _SIMPLE.match(text)) and wanted in ("auto", _SIMPLE_OPS[m["op"].lower()]):
        return do_simple(_SIMPLE_OPS[m["op"].lower()], m["body"])
    if m := matched(_NUMERIC, "numeric"):
        return do_numeric(m["body"], int(m["digits"]) if m["digits"] else 15)
    if m := matched(_EVALUATE, "evaluate"):
        return do_evaluate(m["body"])
    explicit = {
        "integrate": do_integrate, "differentiate": do_differentiate, "solve": do_solve, "limit": do_limit,
        "series": do_series, "numeric": do_numeric,
    }
    if wanted in explicit:
        return explicit[wanted](text)
    if wanted in ("simplify", "expand", "factor"):
        return do_simple(wanted, text)
    return do_evaluate(text)


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """One request of the worker protocol; every failure becomes `{"ok": false, "error": ...}`."""
    try:
        result = compute(str(request.get("expression", "")), str(request.get("operation", "auto")))
    except MathError as error:
        return {"ok": False, "error": str(error)}
    except MemoryError:
        return {"ok": False, "error": "the computation needs more memory than allowed"}
    except RecursionError:
        return {"ok": False, "error": "the expression is nested too deeply"}
    except (NotImplementedError, ValueError, TypeError, ZeroDivisionError, AttributeError) as error:
        return {"ok": False, "error": f"SymPy cannot compute this: {type(error).__name__}: {error}"}
    except Exception as error:
        return {"ok": False, "error": f"SymPy failed: {type(error).__name__}: {error}"}
    return {"ok": True, "result": asdict(result)}


def main(memory_limit: int | None = None) -> None:
    """Worker loop: the address-space cap, then one JSON request per line (see `math_calc.WORKER_COMMAND`)."""
    if memory_limit is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            response: dict[str, Any] = {"ok": False, "error": "malformed request"}
        else:
            response = handle(request if isinstance(request, dict) else {})
        out.write(json.dumps(response) + "\n")
        out.flush()
