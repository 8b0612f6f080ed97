"""The exit codes of the `ems` command, and the one-line error a command stops with.

One place for the codes (`ems --help` shows them, the README lists them):

    0    done (a test that ran and failed its checks is still 0; its report says FAIL)
    1    cannot start or cannot go on: a unit that does not answer, a data directory or event
         log that is not there, a port in use, a site already running
    2    the command line or a file it names is wrong: a bad option value, an io_map, scenario
         or profile with an error (every error, file:line: key: message)
    3, 4 `ems run`: restart or reboot requested through the site state
    130  interrupted (Ctrl-C, SIGTERM, SIGHUP), after undoing what the command changed on a unit
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_START = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

EPILOG = """exit codes:
  0     done
  1     cannot start or go on: a unit that does not answer, no event log, a port in use
  2     a bad option value or a file with errors (file:line: key: message, every one)
  3, 4  ems run: restart or reboot requested through the site state
  130   interrupted (Ctrl-C, SIGTERM, SIGHUP); a live test first withdraws its capacity"""


class CommandError(Exception):
    """A command stops with this one line on stderr and this exit code: no traceback."""

    def __init__(self, message: str, code: int = EXIT_START):
        super().__init__(message)
        self.code = code
