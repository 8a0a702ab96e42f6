"""Task vectors from expressions over sessions: `"COT5 - VAN5"`, `"0.5 * A + B"`, `"-(A - B)"`.

Session names hold `-`, `.` and `/` (`SmolLM2-135M-Instruct.Q4_1`, `outputs/task_vector/...`), so
each operand (a run of characters other than spaces, `+ * ( )`, `-` only inside it) is first
swapped for a placeholder name; Python's `ast` then parses the arithmetic, and only numbers,
placeholders, `+ - *`, parentheses and unary minus are accepted. Operands that are not
numbers are sessions, resolved as `load_session` resolves them.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from pathlib import Path

from taskvec.errors import TaskvecError
from taskvec.session.reader import load_session
from taskvec.session.vector import TaskVector

OPERAND = re.compile(r"[^\s+*()\-][^\s+*()]*")
Value = float | TaskVector


def _number(text: str) -> float | None:
    """`text` as a finite number, None if it is not a number."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        raise TaskvecError(f"vector: the factor {text} is not a finite number")
    return value


def parse_vector(expression: str, output_dir: Path, position: str = "last") -> TaskVector:
    """The task vector `expression` names, from the sessions under `output_dir` at `position`."""
    text = expression.strip()
    if not text:
        raise TaskvecError("vector: the expression is empty; name a session, e.g. 'COT5 - VAN5'")
    operands: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if _number(match.group()) is not None:
            return match.group()
        operands.append(match.group())
        return f"_s{len(operands) - 1}"

    source = OPERAND.sub(placeholder, text)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise TaskvecError(
            f"vector: cannot parse '{text}'; write sums of scaled sessions like "
            "'0.5 * A + B' (spaces around a binary minus)"
        ) from None
    loaded: dict[str, TaskVector] = {}

    def session(name: str) -> TaskVector:
        if name not in loaded:
            loaded[name] = load_session(name, output_dir).task_vector(position)
        return loaded[name]

    value = _evaluate(tree.body, operands, session, text)
    if not isinstance(value, TaskVector):
        raise TaskvecError(f"vector: '{text}' is a number, not a vector; name at least one session")
    return TaskVector(
        value.vectors, value.position, value.model, value.hidden_size, text, value.sessions
    )


def _evaluate(
    node: ast.AST, operands: list[str], session: Callable[[str], TaskVector], text: str
) -> Value:
    """The value of one node: numbers stay floats, placeholders become sessions' vectors."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        if not isinstance(node.value, bool):
            return float(node.value)
    if isinstance(node, ast.Name) and re.fullmatch(r"_s\d+", node.id):
        return session(operands[int(node.id[2:])])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _evaluate(node.operand, operands, session, text)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        left = _evaluate(node.left, operands, session, text)
        right = _evaluate(node.right, operands, session, text)
        return _binary(node.op, left, right, text)
    raise TaskvecError(
        f"vector: '{text}' uses something other than sessions, numbers, + - * and parentheses"
    )


def _binary(op: ast.operator, left: Value, right: Value, text: str) -> Value:
    """`left op right` with the refusals an expression needs (vector * vector, number + vector)."""
    if isinstance(op, ast.Mult):
        if isinstance(left, TaskVector) and isinstance(right, TaskVector):
            raise TaskvecError(
                f"vector: '{text}' multiplies two vectors; multiply a vector by a number"
            )
        return left * right
    if isinstance(left, TaskVector) != isinstance(right, TaskVector):
        raise TaskvecError(
            f"vector: '{text}' adds or subtracts a number and a vector; scale vectors with *"
        )
    return left + right if isinstance(op, ast.Add) else left - right  # type: ignore[operator]
