"""The one exception type users see for bad input."""


class InputError(Exception):
    """A user mistake in an input file or option: the CLI prints it as one line and exits 2."""

    def __init__(self, source, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
