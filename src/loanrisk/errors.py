"""One root exception; the command line and the API translate these at the edge."""


class LoanriskError(Exception):
    """Root of every error loanrisk raises on purpose."""


class ConfigError(LoanriskError):
    """Settings that cannot work (bad URL, unwritable home folder, ...)."""


class ProfileError(LoanriskError):
    """A dataset profile file that is missing, malformed or inconsistent."""


class InputFileError(LoanriskError):
    """An input file that cannot be read as loans (missing columns, bad encoding, ...)."""


class RejectedFileError(InputFileError):
    """A file whose share of rejected rows is above the limit: nothing of it was loaded."""


class WarehouseError(LoanriskError):
    """The warehouse is unreachable or in a state that forbids the operation."""


class UnreachableError(WarehouseError):
    """A server (the warehouse database, the MLflow server) did not answer: retry later."""


class NothingToDo(LoanriskError):
    """A step found nothing new to work on; schedulers and the pipeline report it as skipped."""


class NotFoundError(LoanriskError):
    """What was asked for (a prediction, a version) does not exist."""


class RefusedInput(LoanriskError):
    """A request or argument that is well-formed but cannot be acted on as given."""
