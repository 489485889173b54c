"""V3 dynamic inputs: what ``/object_info`` declares, expanded for a node's values as ComfyUI does.

Nodes written with ComfyUI's V3 schema (``comfy_api/latest/_io.py``, ComfyUI 0.26) may declare
inputs whose set depends on the node's own values. ``/object_info`` lists each as one input
whose type names its kind (``[type, options]``):

* a **dynamic combo**, ``["COMFY_DYNAMICCOMBO_V3", {"options": [{"key": "scale dimensions",
  "inputs": {"required": {"width": ["INT", {...}], ...}, "optional": {...}}}, ...]}]``: a combo
  whose chosen option brings its own inputs, named ``<combo>.<input>`` in a prompt
  (``resize_type.width``); an option may hold further dynamic inputs (``model.images.image_1``);
* an **autogrow** group, ``["COMFY_AUTOGROW_V3", {"template": {"input": {"required": {"image":
  [...]}}, "prefix": "image_", "min": 1, "max": 10}}]`` (or ``"names": [...]`` instead of a
  prefix and max): sockets ``<group>.<prefix><i>`` (``images.image_0``), the first ``min``
  required;
* a **dynamic slot**, ``["COMFY_DYNAMICSLOT_V3", {"slotType": "IMAGE", "inputs": {...}}]``: a
  socket whose inputs appear once it is connected.

:func:`live_inputs` gives every input a node of the class takes with the given values, as
``get_finalized_class_inputs`` does on the server before it validates a prompt; the converter
(``uiformat``), preflight and patches (``workflow``) all use it. Pure: no comfytest imports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
AUTOGROW = "COMFY_AUTOGROW_V3"
DYNAMIC_SLOT = "COMFY_DYNAMICSLOT_V3"
DYNAMIC_TYPES = frozenset({DYNAMIC_COMBO, AUTOGROW, DYNAMIC_SLOT})
_SECTIONS = ("required", "optional")


@dataclass(frozen=True)
class LiveInput:
    """One input a node takes with its current values."""

    name: str  # the full name, as in a prompt: "resize_type.width"
    spec: Any  # its [type, options] from /object_info
    required: bool
    #: the dynamic combo whose chosen option brings it (full name), and that option's key
    combo: str | None = None
    option: str | None = None


def kind(spec: object) -> str | None:
    """The dynamic kind of an input spec (``COMFY_DYNAMICCOMBO_V3``…), or None for a plain one."""
    if isinstance(spec, list | tuple) and spec and isinstance(spec[0], str) and spec[0] in DYNAMIC_TYPES:
        return spec[0]
    return None


def is_dynamic_combo(spec: object) -> bool:
    return kind(spec) == DYNAMIC_COMBO


def _options(spec: Any) -> Mapping[str, Any]:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}


def combo_keys(spec: Any) -> list[str]:
    """The options of a dynamic combo, in declared order."""
    return [str(o.get("key")) for o in _options(spec).get("options") or [] if isinstance(o, Mapping)]


def entries(sections: object) -> Iterator[tuple[str, Any, bool]]:
    """``(name, spec, required)`` of an ``{"required": {...}, "optional": {...}}`` table, in order."""
    if not isinstance(sections, Mapping):
        return
    for section in _SECTIONS:
        for name, spec in (sections.get(section) or {}).items():
            yield str(name), spec, section == "required"


def option_inputs(spec: Any, key: object) -> list[tuple[str, Any, bool]] | None:
    """The inputs (unprefixed ``(name, spec, required)``) that option ``key`` of a dynamic combo
    brings, or None when the combo has no such option."""
    for option in _options(spec).get("options") or []:
        if isinstance(option, Mapping) and option.get("key") == key:
            return list(entries(option.get("inputs")))
    return None


def options_with(spec: Any, name: str) -> list[str]:
    """The options of a dynamic combo that bring an input called ``name`` (unprefixed)."""
    return [key for key in combo_keys(spec)
            if any(n == name for n, _, _ in option_inputs(spec, key) or [])]


def class_entries(object_info: Mapping[str, Any], class_type: str) -> list[tuple[str, Any, bool]]:
    """A class's top-level inputs in the order the frontend creates them (``input_order``)."""
    info = object_info.get(class_type) or {}
    sections = info.get("input") or {}
    order = info.get("input_order")
    found = {name: (name, spec, required) for name, spec, required in entries(sections)}
    if isinstance(order, Mapping):
        named = [found[str(n)] for s in _SECTIONS for n in order.get(s) or [] if str(n) in found]
        return named + [e for n, e in found.items() if e not in named]
    return list(found.values())


def dynamic_parent(live: Mapping[str, LiveInput], name: str) -> str | None:
    """The dynamic combo an input name belongs under (the longest prefix: nested combos), if any."""
    found = [c for c, e in live.items() if is_dynamic_combo(e.spec) and name.startswith(c + ".")]
    return max(found, key=len) if found else None


def option_input_names(live: Mapping[str, LiveInput], combo: str) -> list[str]:
    """The inputs the chosen option of ``combo`` brings (``["none"]`` when it brings none), for messages."""
    return [n for n, e in live.items() if e.combo == combo] or ["none"]


def live_inputs(object_info: Mapping[str, Any], class_type: str, values: Mapping[str, Any]) -> dict[str, LiveInput]:
    """Every input ``class_type`` takes given the node's ``values`` (full name → input): its plain
    inputs, each dynamic combo with the inputs of its chosen option, every socket an autogrow
    group may have, and a connected dynamic slot's inputs. Empty for a class the server lacks."""
    found: dict[str, LiveInput] = {}
    _expand(class_entries(object_info, class_type), values, "", None, found)
    return found


def _expand(items: list[tuple[str, Any, bool]], values: Mapping[str, Any], prefix: str,
            parent: tuple[str, str] | None, found: dict[str, LiveInput]) -> None:
    combo, option = parent if parent else (None, None)
    for name, spec, required in items:
        full = prefix + name
        dynamic = kind(spec)
        if dynamic == AUTOGROW:
            for sub, sub_spec, sub_required in autogrow_entries(spec):
                found[f"{full}.{sub}"] = LiveInput(f"{full}.{sub}", sub_spec, sub_required, combo, option)
            continue
        found[full] = LiveInput(full, spec, required, combo, option)
        if dynamic == DYNAMIC_COMBO and full in values:
            chosen = option_inputs(spec, values[full])
            if chosen is not None:
                _expand(chosen, values, full + ".", (full, str(values[full])), found)
        elif dynamic == DYNAMIC_SLOT and full in values:
            _expand(list(entries(_options(spec).get("inputs"))), values, full + ".", parent, found)


def autogrow_entries(spec: Any) -> list[tuple[str, Any, bool]]:
    """The sockets an autogrow group may have (unprefixed ``(name, spec, required)``)."""
    template = _options(spec).get("template") or {}
    first = next(entries(template.get("input")), None)
    if first is None:
        return []
    _, input_spec, template_required = first
    minimum = template.get("min", 1)
    if isinstance(template.get("names"), list):
        names = [str(n) for n in template["names"]]
    else:
        names = [f"{template.get('prefix', '')}{i}" for i in range(int(template.get("max", 1)))]
    minimum = minimum if isinstance(minimum, int) else 1
    return [(n, input_spec, template_required and i < minimum) for i, n in enumerate(names)]


_LITERAL_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


def is_literal(spec: Any) -> bool:
    """An input that takes a value (a widget in the editor), not a socket such as IMAGE."""
    if not isinstance(spec, list | tuple) or not spec or _options(spec).get("forceInput"):
        return False
    return isinstance(spec[0], list) or spec[0] in _LITERAL_TYPES or spec[0] == DYNAMIC_COMBO


def default_key(spec: Any) -> str | None:
    """The option a dynamic combo starts with: its declared default, else the first option."""
    default = _options(spec).get("default")
    keys = combo_keys(spec)
    return str(default) if default in keys else (keys[0] if keys else None)


def input_default(spec: Any) -> Any:
    """The value a freshly created widget of this spec holds (the frontend's default)."""
    if is_dynamic_combo(spec):
        return default_key(spec)
    options = _options(spec)
    if "default" in options:
        return options["default"]
    if isinstance(spec, list | tuple) and spec and isinstance(spec[0], list):
        return spec[0][0] if spec[0] else None
    choices = options.get("options")
    if isinstance(choices, list) and choices:
        return choices[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(str(spec[0]) if spec else "")
