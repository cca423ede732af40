"""One error base for everything a user can get wrong.

:class:`DreamlabError` subclasses ``ValueError`` so library callers that catch ``ValueError``
keep working; the ``dreamlab`` command turns any of them into one line on stderr and exit code 2
(``--debug`` shows the traceback). Messages name the file, the field and what was expected.
"""

from __future__ import annotations


class DreamlabError(ValueError):
    """A user error (bad input, bad setting, missing file); its message is the whole explanation."""


class ConfigError(DreamlabError):
    """A configuration value or key that does not fit the config's schema."""
