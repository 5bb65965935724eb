"""Old home of the dpdata plugin, now deepmd_charge/dpdata_plugin.py (beside entrypoint.py).

Installs made before the move name this module in their `dpdata.plugins` entry point, and dpdata
imports every plugin when it starts: this stub keeps them working until `pip install -e .` is run
again. It names the plugin by string so that io/ does not import upwards (the plugin uses
convert.py, which uses io/).
"""

import importlib

importlib.import_module("deepmd_charge.dpdata_plugin")
