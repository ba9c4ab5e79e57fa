"""A backend's options: name, kind, default, allowed values, and their spelling in a spec string.

Every command line names a backend the same way (docs/design.md section 4)::

    name[:option=value[,option=value...]]       e.g. stdeform:mode=frames,n_points=32
                                                     window:size=2x4x4

``Option.parse`` reads one value from that text, ``Option.validate`` checks a value given in
Python or JSON (a list for a triple), and ``Option.format`` writes it back, so that a spec
survives a round trip through config files and results. Every error is one line naming the
backend, the option, what was expected and what was got.
"""

import dataclasses
from typing import Any

KINDS = ("int", "float", "str", "bool", "int3")
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")
NONE = "none"


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a backend.

    kind: "int", "float", "str", "bool" or "int3" (three ints, written ``2x4x4``).
    default: the value when the spec does not name the option (None: unset, written "none";
      only allowed when ``optional``).
    choices: allowed values (str options); minimum: the least value of a number (or of each
      entry of an int3).
    identifies: the option is part of the method's identity in results and tables (an option
      that changes only how the same arithmetic is executed, such as a kernel choice, still
      identifies: its speed and memory differ).
    """

    name: str
    kind: str
    default: Any
    help: str = ""
    choices: tuple = ()
    minimum: float | None = None
    optional: bool = False
    identifies: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {KINDS}, got {self.kind!r}")

    def expected(self) -> str:
        """What a valid value looks like, for error messages and help."""
        if self.choices:
            text = " | ".join(str(c) for c in self.choices)
        elif self.kind == "int3":
            text = "three integers TxHxW" + (f" >= {self.minimum:g}" if self.minimum else "")
        elif self.kind in ("int", "float"):
            text = f"{'an integer' if self.kind == 'int' else 'a number'}"
            if self.minimum is not None:
                text += f" >= {self.minimum:g}"
        elif self.kind == "bool":
            text = "true | false"
        else:
            text = "text"
        return text + (" | none" if self.optional else "")

    def _fail(self, owner: str, got) -> ValueError:
        return ValueError(f"{owner}: option {self.name} expects {self.expected()}, got {got!r}")

    def parse(self, text: str, owner: str = "backend") -> Any:
        """The value written ``text`` in a spec string."""
        text = text.strip()
        if self.optional and text.lower() == NONE:
            return None
        try:
            if self.kind == "int":
                value = int(text)
            elif self.kind == "float":
                value = float(text)
            elif self.kind == "bool":
                if text.lower() not in TRUE + FALSE:
                    raise ValueError
                value = text.lower() in TRUE
            elif self.kind == "int3":
                value = tuple(int(part) for part in text.lower().split("x"))
            else:
                value = text
        except ValueError:
            raise self._fail(owner, text) from None
        return self.validate(value, owner)

    def validate(self, value: Any, owner: str = "backend") -> Any:
        """``value`` in canonical form (an int3 as a tuple), or a ValueError naming the option."""
        if value is None:
            if self.optional:
                return None
            raise self._fail(owner, value)
        if self.kind == "int3":
            if not isinstance(value, list | tuple) or len(value) != 3:
                raise self._fail(owner, value)
            entries = [self._number(v, int, owner, value) for v in value]
            return tuple(entries)
        if self.kind == "int":
            return self._number(value, int, owner, value)
        if self.kind == "float":
            return self._number(value, float, owner, value)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise self._fail(owner, value)
            return value
        if not isinstance(value, str) or (self.choices and value not in self.choices):
            raise self._fail(owner, value)
        return value

    def _number(self, value, kind, owner: str, shown):
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or (kind is int and float(value) != int(value)):
            raise self._fail(owner, shown)
        value = kind(value)
        if self.minimum is not None and value < self.minimum:
            raise self._fail(owner, shown)
        return value

    def format(self, value: Any) -> str:
        """``value`` written as a spec string would write it."""
        if value is None:
            return NONE
        if self.kind == "int3":
            return "x".join(str(v) for v in value)
        if self.kind == "bool":
            return "true" if value else "false"
        return str(value)


def split_spec(text: str) -> tuple[str, dict[str, str]]:
    """``"name:a=1,b=2"`` -> ("name", {"a": "1", "b": "2"}); the values are still text."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"backend spec: expected name[:option=value,...], got {text!r}")
    name, _, rest = text.strip().partition(":")
    pairs = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(
                f"backend spec {text!r}: expected option=value, got {item!r} "
                "(e.g. stdeform:mode=frames,n_points=32)"
            )
        if key.strip() in pairs:
            raise ValueError(f"backend spec {text!r}: option {key.strip()} given twice")
        pairs[key.strip()] = value.strip()
    return name.strip(), pairs


DENSE_IMPLS = ("sdpa", "math")
# the kernel choice of the backends that run dense softmax attention (within their key sets)
DENSE_IMPL = Option(
    "impl",
    "str",
    "sdpa",
    "sdpa: F.scaled_dot_product_attention; math: softmax(QK^T/sqrt(d))V, materialising the "
    "attention matrices",
    choices=DENSE_IMPLS,
)
