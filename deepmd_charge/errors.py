"""The one exception type users see for bad input."""


class InputError(Exception):
    """A user mistake in an input file or option: the CLI prints it as one line and exits 2."""

    def __init__(self, source, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ConfigError(ValueError):
    """A charge-model setting in input.json that cannot work (ghost type, sel, loss options).

    Raised while `dp train` builds the model; the plugin shows it as one line, not a traceback.
    """


def install_dp_excepthook() -> None:
    """Make an uncaught ConfigError end `dp` with one line on stderr instead of a traceback."""
    import sys

    previous = sys.excepthook
    if getattr(previous, "_deepmd_charge", False):
        return

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, ConfigError):
            name = next((a for a in sys.argv[1:] if a.endswith(".json")), "input.json")
            print(f"dp: error: {name}: {exc}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    hook._deepmd_charge = True
    sys.excepthook = hook
