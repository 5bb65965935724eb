"""Checks of a charge model's input.json made before `dp train` reads any data.

DeePMD-kit loads the training data (for its neighbour statistics) before it builds the model, so
a type_map without the ghost type, or without an element of the data, used to end in a traceback
(`ValueError: Elements ['X'] are not present in the provided type_map`) before the fitting's own
check could speak. `install()` (called when DeePMD-kit loads the plugin) puts the checks first and
turns that ValueError into one line naming the elements to add.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ase.data import chemical_symbols

from deepmd_charge.errors import ConfigError

_MISSING = re.compile(r"Elements (\[.*\]) are not present in the provided `type_map`")


def _is_charge(model: dict) -> bool:
    return isinstance(model, dict) and (model.get("fitting_net") or {}).get("type") == "charge"


def check_charge_model(model: dict) -> None:
    """ConfigError unless model/type_map ends in a ghost type that has sel 0 (dict-level check)."""
    from deepmd_charge.tf.fitting import check_ghost_setup

    sel = (model.get("descriptor") or {}).get("sel")

    class _Descriptor:  # check_ghost_setup reads sel from a descriptor object
        pass

    descriptor = _Descriptor()
    descriptor.sel = sel if isinstance(sel, (list, tuple)) else None
    check_ghost_setup(model.get("type_map"), descriptor)


def data_type_maps(training_data: dict) -> dict:
    """{system folder: its type_map.raw names} for the training systems DeePMD-kit would read."""
    from deepmd.utils.data_system import process_systems

    try:
        systems = process_systems(training_data["systems"], patterns=training_data.get("rglob_patterns"))
    except Exception:  # DeePMD-kit reports bad system paths itself
        return {}
    found = {}
    for system in systems:
        raw = Path(system) / "type_map.raw"
        if raw.is_file():
            found[str(system)] = raw.read_text().split()
    return found


def missing_elements_message(type_map, training_data: dict) -> str:
    """The one-line explanation of data types that model/type_map lacks."""
    found = data_type_maps(training_data)
    names = list(dict.fromkeys(n for tm in found.values() for n in tm))
    missing = [n for n in names if n not in (type_map or [])]
    ghosts = [n for n in names if n not in chemical_symbols[1:]]
    elements = [n for n in names if n in chemical_symbols[1:]]
    for n in type_map or []:  # keep the user's order, then add what the data has besides
        if n in chemical_symbols[1:] and n not in elements:
            elements.append(n)
    suggestion = elements + (ghosts[-1:] or ["X"])
    where = [s for s, tm in found.items() if any(m in tm for m in missing)]
    example = f" (e.g. {where[0]})" if where else ""
    return (
        f"the training data has type(s) {missing} that model/type_map {type_map} lacks{example}; "
        f'list every element of the data with the ghost type last: "type_map": {str(suggestion).replace(chr(39), chr(34))}'
    )


def install() -> None:
    """Check charge models before DeePMD-kit's neighbour statistics and data loading."""
    import deepmd.tf.entrypoints.train as train

    if getattr(train.update_sel, "_deepmd_charge", False):
        return
    original_update_sel = train.update_sel
    original_get_data = train.get_data

    def update_sel(jdata):
        if _is_charge(jdata.get("model")):
            check_charge_model(jdata["model"])
        return original_update_sel(jdata)

    def get_data(jdata, rcut, type_map, modifier, *args, **kwargs):
        try:
            return original_get_data(jdata, rcut, type_map, modifier, *args, **kwargs)
        except ValueError as exc:
            # only in a ghost-point setting: another model's error stays DeePMD-kit's own
            match = _MISSING.search(str(exc))
            types = list(type_map or []) + (ast.literal_eval(match.group(1)) if match else [])
            if match and any(t not in chemical_symbols[1:] for t in types):
                raise ConfigError(missing_elements_message(type_map, jdata)) from None
            raise

    update_sel._deepmd_charge = True
    train.update_sel = update_sel
    train.get_data = get_data
