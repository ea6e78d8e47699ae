"""Evaluates the CloudFormation intrinsics of a template's properties.

The local stack applies some properties of the template itself (those the emulator ignores),
so it needs the values CloudFormation would have passed: ``Ref``, ``Fn::GetAtt`` and
``Fn::Sub`` over parameters, pseudo parameters and deployed resources, and conditions built
from ``Fn::Equals``, ``Fn::Not``, ``Fn::And`` and ``Fn::Or``. Only these are supported;
anything else raises, so a template change that needs more cannot go unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from cfnlint.decode import decode

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class UnsupportedIntrinsic(Exception):
    pass


def load(path: Path) -> dict[str, Any]:
    """Parses a YAML or JSON template (with the short-form tags such as ``!Sub``)."""
    template, matches = decode(str(path))
    if matches or template is None:
        raise ValueError(f"cannot parse {path}: {[str(m) for m in matches]}")
    return template


class Resolver:
    """Turns template values into plain JSON values for one deployed stack.

    `ref` maps a logical id or parameter name to what ``Ref`` returns; `get_att` answers
    ``Fn::GetAtt`` for a deployed resource.
    """

    def __init__(self, ref: Callable[[str], str], get_att: Callable[[str, str], str]) -> None:
        self._ref = ref
        self._get_att = get_att

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                (key, arg), = value.items()
                if key == "Ref":
                    return self._ref(arg)
                if key == "Fn::GetAtt":
                    logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                    return self._get_att(logical_id, attribute)
                if key == "Fn::Sub":
                    return self._sub(arg)
                if key.startswith("Fn::"):
                    raise UnsupportedIntrinsic(key)
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def condition(self, name: str, conditions: dict[str, Any]) -> bool:
        """Evaluates the template condition `name` (``Fn::Equals``, ``Fn::Not``, ``Fn::And``,
        ``Fn::Or`` and ``Condition`` references; anything else raises)."""

        def evaluate(value: Any) -> bool:
            if isinstance(value, dict) and len(value) == 1:
                (key, arg), = value.items()
                if key == "Condition":
                    return evaluate(conditions[arg])
                if key == "Fn::Equals":
                    left, right = (self.resolve(v) for v in arg)
                    return str(left) == str(right)
                if key == "Fn::Not":
                    return not evaluate(arg[0])
                if key == "Fn::And":
                    return all(evaluate(v) for v in arg)
                if key == "Fn::Or":
                    return any(evaluate(v) for v in arg)
            raise UnsupportedIntrinsic(f"condition {name}: {value!r}")

        return evaluate(conditions[name])

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self._get_att(logical_id, attribute))
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")
