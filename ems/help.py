"""Help for every `ems` command: a description, each option with its default, examples.

The parsers are built where each command lives; `document` then walks the finished tree once:
a command without a description gets the one below (else its one-line help), every command
gets its examples in the epilog, and every parser a formatter that shows an option's default
where its help does not already say it. tests/runtime/test_cli_help.py holds every command to it.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator

DESCRIPTIONS = {
    "run": "Runs the controller on a site: reads its devices, runs the site programs every scan, writes the "
           "outputs and serves the tag server. One controller per site: a second one exits 1 naming the first's PID.",
    "check-config": "Validates an io_map (and the device profiles, schedules and keys it names) without running "
                    "it: every error with its file, line and key, all at once.",
    "tags": "Lists the tags of a site: name, access, type, unit, Modbus table and address, and an enum's values. "
            "docs/modbus.md is this list for the shipped home site.",
    "sim": "Simulates a site on the virtual clock against the plant models: the same io_map and programs as on a "
           "unit, about 1000 times faster. Writes a CSV row per sample, an optional plot, and a summary.",
    "events": "Shows the event log of a site (newest last): state and mode changes, errors, alarms, writes with "
              "their origin. Works without a running controller.",
    "simulate-devices": "Serves the simulated plant of an io_map on 127.0.0.1: Modbus meters and inverters, the "
                        "BMS on CAN, so that `ems run` talks to them as to real devices.",
    "prequal": "Runs the Nordic TSOs' FCR-N, FCR-D and FFR prequalification tests, on the simulated site or "
               "(--live) on a running unit, and writes the report, plots, results and the TSO log files.",
    "cloud hub": "Runs a local stand-in for Azure IoT Hub (Mosquitto with TLS on 8883 and WebSockets on 443, "
                 "the SDK's fixed ports, and the hub emulator), writes a device's connection string file (mode "
                 "0600) for [cloud], and prints every message it receives until Ctrl-C (docs/cloud.md).",
    "cluster status": "Members, roles, terms, SOCs and setpoints as one node sees them; a node that does not "
                      "answer is shown unreachable with the age of its last state.",
}

EXAMPLES = {
    "run": ["ems run", "ems run --io-map io_maps/sim_commercial.toml --status-every 5",
            "ems run --virtual-time --duration 3600"],
    "check-config": ["ems check-config io_maps/sim_home.toml"],
    "tags": ["ems tags", "ems tags --io-map io_maps/sim_commercial.toml --format json"],
    "sim": ["ems sim --hours 24 --out run.csv --plot run.png",
            "ems sim --scenario scenarios/peak_shaving.toml --out peak.csv --plot peak.png",
            "ems sim --profile home_day_15min.csv --frequency-profile frequency_dip.csv --hours 2  # sim/profiles/"],
    "events": ["ems events --since 2h", "ems events --severity warning --kind write --limit 20"],
    "simulate-devices": ["ems simulate-devices", "ems simulate-devices --io-map io_maps/sim_commercial.toml"],
    "prequal": ["ems prequal --product fcr-n --test step --out var/prequal",
                "ems prequal --product all --test all --ffr-level all --out docs/prequal",
                "ems prequal --product fcr-d-up --test ramp --live --host 192.168.1.20 --out var/live"],
    "cluster": ["ems cluster status --io-map io_maps/sim_cluster/node1.toml"],
    "cloud": ["ems cloud hub"],
    "cloud hub": ["ems cloud hub", "ems cloud hub --dir var/hubsim --device home-1"],
    "cluster keys": ["ems cluster keys --io-map io_maps/sim_cluster/node1.toml"],
    "cluster status": ["ems cluster status --io-map io_maps/sim_cluster/node1.toml",
                       "ems cluster status --io-map io_maps/sim_cluster/node1.toml --node node2 --json"],
    "cluster state": ["ems cluster state idle --io-map io_maps/sim_cluster/node1.toml"],
    "cluster add": ["ems cluster add --io-map site/node4.toml --voter"],
    "cluster remove": ["ems cluster remove node4 --io-map site/node1.toml"],
    "status": ["ems status", "ems status --watch 1 --io-map io_maps/sim_commercial.toml",
               "ems status --io-map /etc/ems/site.toml --data-dir /var/lib/ems"],
    "read": ["ems read soc_pct grid_power_w site_state"],
    "write": ["ems write mode peak_shaving", "ems write import_limit_w 12000"],
}


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; an option's default appended where its help does not
    mention one (and the default says something: not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings
                or isinstance(action, argparse._HelpAction)):
            return text
        return f"{text} (default {default})" if text else f"(default {default})"


def subcommands(parser: argparse.ArgumentParser,
                path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command path, parser) below `parser`, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from subcommands(sub, (*path, name))


def document(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Descriptions, examples and the defaults formatter on every command of `parser`."""
    parser.formatter_class = Formatter
    helps = _helps(parser)
    for path, sub in subcommands(parser):
        key = " ".join(path)
        sub.formatter_class = Formatter
        if key in DESCRIPTIONS:
            sub.description = DESCRIPTIONS[key]
        elif not sub.description:
            sub.description = helps.get(path)
        if sub.description and "\n" not in sub.description:  # raw text below: wrap it here, once
            sub.description = textwrap.fill(sub.description, 88)
        examples = EXAMPLES.get(key)
        if examples:
            block = "examples:\n" + "\n".join(f"  {line}" for line in examples)
            sub.epilog = f"{block}\n\n{sub.epilog}" if sub.epilog else block
    return parser


def _helps(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str | None]:
    """The one-line help each command's parent gave it, by command path, in one walk."""
    helps: dict[tuple[str, ...], str | None] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps.update({(*path, choice.dest): choice.help for choice in action._choices_actions})
            for name, sub in action.choices.items():
                helps.update(_helps(sub, (*path, name)))
    return helps
